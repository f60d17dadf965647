"""Conformance of every shipped spec (specs/**/*.yaml) as a backbone, at tiny widths (one block per
stage): at two non-square sizes not divisible by 32, every feature map has feature_info's channels and
``ceil(size / reduction)`` (stems and downsamplers pad like the official detection backbones), and the
backbone's maps equal the classifier's ``forward_intermediates`` with the same weights."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archdsl.compiler import build_model
from archdsl.language import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))
SIZES = [(33, 50), (52, 39)]
# specs whose official downsamplers floor odd grids (a 2x2 stride-2 conv drops the last row/column, as
# timm's convnext_tiny does); the others pad them (the official MLLA detection backbone's rule)
FLOOR = {"convnext_t"}  # grids at stride 32: 2x2 after odd grids (9x13 -> 5x7 -> 3x4) on the way


def tiny_overrides(path: Path) -> list:
    """One block per stage; stage widths max(8 * heads, 8 * 2^i) (divisible by the spec's heads)."""
    spec = load_spec(path)
    if spec.layout != "hierarchical":
        return ["depth=4", f"dim={8 * int(spec.heads or 1)}"]
    heads = spec.stages.heads or [1] * len(spec.stages.depths)   # SSM / conv-only specs name no heads
    dims = [max(8 * h, 8 * 2 ** i) for i, h in enumerate(heads)]
    n = len(dims)
    return ["stages.embed_dim=null", f"stages.dims=[{','.join(map(str, dims))}]",
            f"stages.depths=[{','.join(['1'] * n)}]", "drop_path=0"]


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT)) for p in SPECS])
def test_backbone_conformance(path):
    torch.manual_seed(0)
    model = build_model(path, tiny_overrides(path)).eval()
    n = len(model.feature_info)
    per_size = []
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.randn(1, model.in_chans, h, w)
            per_size.append((x, model.forward_intermediates(x, intermediates_only=True)))
        model.set_features(features_only=True)  # the same weights, now a backbone
        info = model.feature_info
        assert len(info) == n and model.head is None
        for x, reference in per_size:
            maps = model(x)
            assert len(maps) == len(reference) == len(info.channels())
            for f, ref, c, r in zip(maps, reference, info.channels(), info.reduction()):
                if path.stem in FLOOR:   # the stem pads to its patch, each later stage floors
                    r0 = info.reduction()[0]
                    size = lambda v, r=r, r0=r0: math.ceil(v / r0) // (r // r0)  # noqa: E731
                    assert tuple(f.shape) == (1, c, size(x.shape[2]), size(x.shape[3]))
                else:
                    assert tuple(f.shape) == (1, c, math.ceil(x.shape[2] / r), math.ceil(x.shape[3] / r))
                assert torch.isfinite(f).all()
                torch.testing.assert_close(f, ref, rtol=0, atol=0)
    reductions = info.reduction()
    assert reductions == sorted(reductions) and reductions[-1] == model.reduction
