"""Helpers for the compiler tests: the tiny test mixer (registered by conftest.py for the session)
and spec builders."""
from __future__ import annotations

import copy

import torch
from torch import nn

TEST_MIXER = "c2_test_mixer"


class TinyMixer(nn.Module):
    """Token mixer for tests: ``proj(x) + scale * mean_n(x)``. x: [B, N, C] -> [B, N, C].
    Params: C*C + C (proj) + C (scale)."""

    def __init__(self, dim: int, heads: int, scale_init: float = 1.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if scale_init < 0:
            raise ValueError(f"scale_init must be >= 0, got {scale_init}")
        self.dim, self.heads = dim, heads
        self.proj = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), float(scale_init)))

    def forward(self, x, hw):
        return self.proj(x) + self.scale * x.mean(dim=1, keepdim=True)


def iso_spec(body=None, *, dim=8, depth=1, heads=2, image_size=16, patch_size=4, num_classes=3, **extra):
    """An isotropic spec dict with one inline block template ``t`` (body given) and the test mixer."""
    spec = {"name": "tiny", "layout": "isotropic", "image_size": image_size, "num_classes": num_classes,
            "patch_size": patch_size, "dim": dim, "depth": depth, "heads": heads,
            "mixer": {"type": TEST_MIXER}, "block": "t",
            "blocks": {"t": {"body": copy.deepcopy(body if body is not None else ["identity"])}}}
    spec.update(extra)
    return spec


def hier_spec(body=None, *, dims=(8, 16), depths=(1, 1), heads=(1, 2), image_size=16, num_classes=3, **extra):
    spec = {"name": "tiny_h", "layout": "hierarchical", "image_size": image_size, "num_classes": num_classes,
            "stem": {"type": "patch_embed", "patch_size": 2},
            "stages": {"dims": list(dims), "depths": list(depths), "heads": list(heads)},
            "mixer": {"type": TEST_MIXER}, "block": "t",
            "blocks": {"t": {"body": copy.deepcopy(body if body is not None else ["identity"])}}}
    spec.update(extra)
    return spec


def first_block(model):
    return model.stages[0].blocks[0]


def nparams(m):
    return sum(p.numel() for p in m.parameters())
