"""A dynamic height / width (torch.export): the specs whose ops follow any grid give eager's output
at other sizes (including the base grid of a learned position table); the others are refused before
tracing, naming the module and why; a program whose guards still pin a size is refused after tracing.

Every shipped spec was run this way once (docs/export.md lists them); the tests export a few
representatives (export is slow) and classify every spec cheaply (no trace)."""
from __future__ import annotations

import copy

import pytest
import torch
from export_helpers import IDS, ROOT, SPECS, tiny_model
from torch import nn

from archdsl.export import ExportError, export_program, fixed_size_modules

# the shipped specs whose ops fix the grid size, with the first module and the reason's start
FIXED_SIZE = {
    "swin_t.yaml": ("stages.0.blocks.0.attn", "SoftmaxAttention: Swin windows: the padding to the window size"),
    "ablation/forget_gate.yaml": ("stages.0.blocks.0.attn", "LinearAttention: forget_gate True: the causal scan"),
    "vmamba_like_t.yaml": ("stages.0.blocks.0.attn", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/vmamba_t_v0.yaml": ("stages.0.blocks.0.ssm", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/vim_t.yaml": ("stages.0.blocks.0.ssm", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/vim_s.yaml": ("stages.0.blocks.0.ssm", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/vmamba_t_v2.yaml": ("stages.0.blocks.0.ssm", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/efficientvmamba_t.yaml": ("stages.0.blocks.0.ssm", "SelectiveSSM: selective scan: the causal scan"),
    "zoo/plainmamba_l1.yaml": ("stages.0.blocks.0.ssm", "MultiScanSSM: selective scan along 4 path(s): the causal"),
    "zoo/localvmamba_t.yaml": ("stages.0.blocks.0.ssm", "MultiScanSSM: selective scan along 4 path(s): the causal"),
}
# exported with a dynamic H / W here: APE with a class token (isotropic, stride 16), ConvNeXt, MambaOut
# (MLLA-T: tests/export/test_export_formats.py, through ONNX)
DYNAMIC = ["zoo/vit_s16.yaml", "zoo/convnext_t.yaml", "zoo/mambaout_t.yaml"]


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_every_shipped_spec_is_classified(path):
    """A spec either has no fixed-size module or is one of FIXED_SIZE, refused before any tracing."""
    name = str(path.relative_to(ROOT / "specs"))
    model = tiny_model(path)
    found = fixed_size_modules(model)
    if name not in FIXED_SIZE:
        assert found == []
        return
    module, reason = FIXED_SIZE[name]
    assert found[0][0] == module and found[0][1].startswith(reason)
    r = model.reduction
    with pytest.raises(ExportError) as e:
        export_program(model, torch.randn(2, 3, 2 * r, 3 * r), dynamic_hw=True)
    assert str(e.value).startswith(f"a dynamic height / width is not possible for this model: {module} ({reason}")
    assert str(e.value).endswith("export at a fixed size (--image-size), one file per size")


@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_hw_program_equals_eager_at_other_sizes(name):
    model = tiny_model(ROOT / "specs" / name)
    r = model.reduction
    program = export_program(copy.deepcopy(model), torch.randn(2, 3, 2 * r, 3 * r), dynamic_hw=True).module()
    # another aspect ratio and batch; the spec's own size (ViT: the base grid of its position table)
    for b, h, w in [(3, 5 * r, 2 * r), (1, 224, 224)]:
        x = torch.randn(b, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(program(x), ref, atol=1e-5, rtol=1e-4)


class _WidthBranch(nn.Module):
    """A Python branch on the concrete width that no module declares: the trace holds for W <= 64 only."""
    reduction = 8
    default_input_size = (3, 16, 16)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        pooled = img.mean((2, 3))
        return pooled * 2 if img.shape[-1] > 64 else pooled


def test_a_program_whose_guards_pin_the_size_is_refused():
    with pytest.raises(ExportError) as e:
        export_program(_WidthBranch(), torch.randn(2, 3, 16, 24), dynamic_hw=True)
    assert str(e.value).startswith("torch.export kept the height / width dynamic but the program does not take "
                                   "16x72 (AssertionError: Guard failed: ")
    assert str(e.value).endswith("an op decides on the concrete size in Python; export at a fixed size (--image-size)")
