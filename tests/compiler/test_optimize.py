"""archdsl.optimize(model, for_inference=True): every shipped spec (specs/**/*.yaml, the ablation
specs included) at a tiny width gives the same logits as the eval-mode original, the original is
left untouched, and the rewrites that should happen do (conv+BN folded, in_proj/act_proj fused)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl.compiler import build_model
from archdsl.compiler.optimize import FusedLinear
from archdsl.language import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))


def _tiny(path: Path) -> nn.Module:
    """The spec at width 32 (heads 1 or 2), one block per stage, 64x64 images, random BN statistics."""
    spec = load_spec(path)
    if spec.layout == "hierarchical":
        n = len(spec.stages.depths)
        sets = [f"stages.depths=[{','.join(['1'] * n)}]", "stages.dims=null", "stages.embed_dim=32"]
        if spec.stages.heads:   # SSM / convolution-only specs name no heads
            sets.append(f"stages.heads=[{','.join(str(min(2, h)) for h in spec.stages.heads)}]")
    else:
        sets = ["depth=1"]
    torch.manual_seed(0)
    model = build_model(path, sets, image_size=64).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT)) for p in SPECS])
def test_optimize_keeps_the_logits(path):
    model = _tiny(path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = archdsl.optimize(model, for_inference=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y, y_fast = model(x), fast(x)
    assert torch.allclose(y_fast, y, rtol=1e-4, atol=1e-5 * y.abs().max().item()), (y_fast - y).abs().max()
    after = model.state_dict()  # the original is not modified
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())


def test_optimize_fuses_mlla_projections_and_folds_the_stem():
    model = _tiny(ROOT / "specs" / "mlla_t.yaml")
    fast = archdsl.optimize(model)
    fused = [m for m in fast.modules() if isinstance(m, FusedLinear)]
    assert len(fused) == 4  # one per MLLA block (depths [1, 1, 1, 1]): in_proj + act_proj
    assert [f.sizes for f in fused] == [[32, 32], [64, 64], [128, 128], [256, 256]]
    assert "fused-linear branch<mul>(main: [in_proj" in repr(fast)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 5 + 3  # stem: 5 ConvNormAct with BN; each of the 3 merges: 1
    assert fast.stem.conv1.conv.bias is not None  # the BN's shift became the conv's bias


def test_optimize_bfloat16_returns_float32_logits_close_to_float32():
    model = _tiny(ROOT / "specs" / "mlla_t.yaml")
    fast = archdsl.optimize(model, dtype=torch.bfloat16)
    x = torch.randn(1, 3, 32, 32)  # small: bf16 matmuls are emulated (slow) on CPUs without bf16 units
    with torch.no_grad():
        y, y16 = model(x), fast(x)
    assert y16.dtype == torch.float32
    assert (y16 - y).abs().max() <= 0.05 * y.abs().max()


def test_optimize_is_for_inference_only():
    with pytest.raises(ValueError, match="optimize\\(\\) rewrites for inference only"):
        archdsl.optimize(nn.Linear(2, 2), for_inference=False)
