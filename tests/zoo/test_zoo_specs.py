"""specs/zoo: every spec has exactly the official parameter count written in its ``meta:`` (counted on
the meta device), the timm models have exactly timm's count (timm.create_model, pretrained=False, on
the meta device), and tiny versions of them compute what timm computes with the same weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archdsl.analysis.summary import count_params
from archdsl.compiler import build_model
from archdsl.convert import convert_timm_state_dict
from archdsl.language import load_spec

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"
SPECS = sorted(ZOO.glob("*.yaml"))
timm = pytest.importorskip("timm")  # a test dependency (pyproject [test]); skipped only without it


def _official(path: Path) -> dict:
    return load_spec(str(path)).meta["official"]


def test_the_zoo_has_the_models_of_the_issue():
    names = {p.stem for p in SPECS}
    assert {"convnext_t", "vit_s16", "deit_s", "mambaout_t"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_exact_official_parameter_count(path):
    model = build_model(str(path), device="meta")
    assert count_params(model) == _official(path)["params"]


@pytest.mark.parametrize("path", [p for p in SPECS if "timm" in _official(p)], ids=lambda p: p.stem)
def test_timm_count(path):
    official = _official(path)
    with torch.device("meta"):
        ref = timm.create_model(official["timm"], pretrained=False)
    assert count_params(build_model(str(path), device="meta")) == count_params(ref) == official["params"]


# ---------------------------------------------------------------- same function as timm (tiny sizes)
def _load(ours, mapping):
    """Copy timm's tensors into our model: ``mapping`` = {our key: timm tensor}; every key of ours."""
    state = ours.state_dict()
    assert set(mapping) == {k for k in state if not k.endswith("num_batches_tracked")}
    ours.load_state_dict({**state, **mapping})


def _weights_and_biases(r, modules):
    """``{our module: timm module}`` -> ``{our key: timm tensor}`` for ``.weight`` and ``.bias``."""
    return {f"{o}.{p}": r[f"{t}.{p}"] for o, t in modules.items() for p in ("weight", "bias")}


def _same_logits(ours, ref, size):
    torch.manual_seed(0)
    img = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(img), ref.eval()(img), rtol=1e-4, atol=1e-4)


def _randomised(ref):
    """Every weight of a timm model perturbed (its 1e-6 layer scale would hide a block, its unit norms a
    swapped norm), so equal logits mean equal functions."""
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


def test_convnext_matches_timm():
    """Weights mapped by the converter (``archdsl import-weights --from timm``, convert/timm.py)."""
    ref = _randomised(timm.create_model("convnext_tiny", pretrained=False, depths=(1, 2, 1, 1), dims=(8, 16, 32, 64),
                                        num_classes=5))
    ours = build_model(str(ZOO / "convnext_t.yaml"), ["stages.embed_dim=8", "stages.depths=[1,2,1,1]",
                                                       "num_classes=5", "image_size=64"])
    ours.load_state_dict(convert_timm_state_dict(ref.state_dict(), ours))
    _same_logits(ours, ref, 64)


def test_vit_matches_timm_with_the_class_token():
    ref = _randomised(timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                        embed_dim=32, depth=2, num_heads=2, num_classes=5))
    ours = build_model(str(ZOO / "vit_s16.yaml"), ["image_size=32", "patch_size=8", "dim=32", "depth=2",
                                                    "heads=2", "num_classes=5"])
    ours.load_state_dict(convert_timm_state_dict(ref.state_dict(), ours))
    _same_logits(ours, ref, 32)


def test_mambaout_matches_timm():
    ref = timm.create_model("mambaout_tiny", pretrained=False, depths=(1, 2), dims=(24, 48), num_classes=5)
    ours = build_model(str(ZOO / "mambaout_t.yaml"), ["stages.dims=[24,48]", "stages.depths=[1,2]",
                                                       "num_classes=5", "image_size=64"])
    r = ref.state_dict()
    mods = {"stem.conv1.conv": "stem.conv1", "stem.conv1.norm": "stem.norm1", "stem.conv2.conv": "stem.conv2",
            "stem.conv2.norm": "stem.norm2", "stages.0.downsample.conv": "stages.1.downsample.conv",
            "stages.0.downsample.norm": "stages.1.downsample.norm", "head.norm": "head.norm",
            "head.fc1": "head.pre_logits.fc", "head.norm2": "head.pre_logits.norm", "head.fc": "head.fc"}
    m = {}
    for s, depth in enumerate((1, 2)):
        for b in range(depth):
            pre = f"stages.{s}.blocks.{b}."
            mods.update({pre + k: pre + k for k in ("norm", "conv", "fc2")})
            for p in ("weight", "bias"):  # timm's fc1 = [fc1_g; fc1_v] (g first, then i and c)
                m[f"{pre}fc1_g.{p}"], m[f"{pre}fc1_v.{p}"] = r[f"{pre}fc1.{p}"].chunk(2)
    m.update(_weights_and_biases(r, mods))
    _load(ours, m)
    _same_logits(ours, ref, 64)
