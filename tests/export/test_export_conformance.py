"""Every shipped spec (tiny widths) exports with torch.export (dynamic batch) and the program equals
eager; an eager call after the export, in the same process, returns a real tensor equal to before
(tracing used to leave FakeTensors in the RoPE / window caches)."""
from __future__ import annotations

import copy

import pytest
import torch
from export_helpers import IDS, ROOT, SIZE, SPECS, tiny_model, tiny_overrides
from torch._subclasses.fake_tensor import FakeTensor

from archdsl.compiler import build_model
from archdsl.export import export_program
from archdsl.ops.tracing import clear_caches


def _real(t: torch.Tensor) -> bool:
    return type(t) is torch.Tensor and not isinstance(t, FakeTensor)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_export_equals_eager_and_leaves_no_fake_tensor(path):
    model = tiny_model(path)
    fresh = copy.deepcopy(model)  # no per-module cache filled yet
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        before = model(x)
    clear_caches()  # the export below is the first to need every table
    program = export_program(fresh, x, dynamic_batch=True)
    with torch.no_grad():
        after = fresh(x)
    assert _real(after) and torch.equal(after, before)
    exported = program.module()
    torch.testing.assert_close(exported(x), before, atol=1e-5, rtol=1e-4)
    x3 = torch.randn(3, 3, *SIZE)  # another batch size through the same program
    with torch.no_grad():
        ref3 = fresh(x3)
    torch.testing.assert_close(exported(x3), ref3, atol=1e-5, rtol=1e-4)


def test_features_only_backbone_exports():
    """A backbone (features_only) exports too: a list of maps, equal to eager at another batch size."""
    path = ROOT / "specs" / "mlla_t.yaml"
    model = build_model(path, tiny_overrides(path), features_only=True, out_indices=(1, 3)).eval()
    exported = export_program(model, torch.randn(2, 3, *SIZE)).module()
    x = torch.randn(3, 3, *SIZE)
    with torch.no_grad():
        ref = model(x)
    out = exported(x)
    assert len(out) == len(ref) == 2
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-4)
