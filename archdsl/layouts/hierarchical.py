"""Hierarchical layout: stem, N stages (per-stage dims / depths / heads, optional per-stage block or
mixer override), a downsample at the end of every stage but the last, head."""
from __future__ import annotations

import math
from typing import Any

import torch

from archdsl.layouts.model import ArchModel, Stage

DEFAULT_STEM = {"type": "patch_embed", "patch_size": 4, "norm": True}
DEFAULT_DOWNSAMPLE = "patch_merging"
DEFAULT_HEAD = "norm_pool_linear"


def drop_path_schedule(rate: float, total: int) -> list:
    """Stochastic depth per block: linear from 0 to ``rate`` over all ``total`` blocks (timm/MLLA)."""
    return [float(r) for r in torch.linspace(0, float(rate), total, device="cpu").tolist()] if total else []


def stem_reduction(stem: Any, in_chans: int = 3) -> int | None:
    """The stem's total stride: its ``reduction`` / ``patch_size`` attribute, else measured by one
    eval-mode pass of a 64x64 image (no statistics updated); None if it cannot be told."""
    r = getattr(stem, "reduction", None) or getattr(stem, "patch_size", None)
    if isinstance(r, int):
        return r
    p = next(iter(stem.parameters()), None)
    probe = torch.zeros(1, in_chans, 64, 64, device=p.device if p is not None else "cpu")
    was = stem.training
    try:
        stem.eval()
        with torch.no_grad():
            _, (h, w) = stem(probe)
        h, w = int(h), int(w)
    except Exception:  # a stem that cannot take 64x64: no check
        return None
    finally:
        stem.train(was)
    return 64 // h if h and w and 64 % h == 0 and h == w else None


def build_posenc(spec: Any, c: Any, dim: int, grid: int | None, class_token: str | None = None) -> list:
    """The spec's ``posenc`` (one ref or a list) built with ``cls(dim, **options)``; ``grid`` (the
    stem's output grid at the spec's image size) and ``class_token`` (its position, or None) are
    supplied to encodings that accept them (APE)."""
    refs = spec.posenc
    if refs is None:
        return []
    items = refs if isinstance(refs, list) else [refs]
    out = []
    for i, ref in enumerate(items):
        path = ("posenc", i) if isinstance(refs, list) else ("posenc",)
        defaults = {"grid": [grid, grid]} if grid else {}
        if class_token:
            defaults["class_token"] = class_token
        out.append(c.component("posenc", ref, path, (dim,), defaults=defaults))
    return out


def check_heads(spec: Any, dim: int, heads: int | None, path: tuple) -> None:
    """``dim`` divisible by ``heads`` (None: the spec gives no heads; a mixer that needs them says so)."""
    if heads is None:
        return
    if heads < 1 or dim % heads:
        raise spec.error(path, f"dim {dim} is not divisible by heads {heads}")


def build_hierarchical(spec: Any, c: Any) -> ArchModel:
    plan = spec.stage_plan()
    dims = [p.dim for p in plan]
    dpr = drop_path_schedule(spec.drop_path or 0.0, sum(p.depth for p in plan))
    stem = c.component("stem", spec.stem or DEFAULT_STEM, ("stem",), (spec.in_chans, dims[0]))
    r0 = stem_reduction(stem, spec.in_chans)
    side = math.ceil(c.image_size / r0) if r0 else None   # token grid side at the spec's image_size
    pos = build_posenc(spec, c, dims[0], side)
    stages, k, reduction, reductions = [], 0, r0, []   # reductions: per stage output (feature_info)
    for i, p in enumerate(plan):
        dim = dims[i]
        reductions.append(reduction)
        check_heads(spec, dim, p.heads, p.heads_path)
        blocks = []
        for j in range(p.depth):
            blocks.append(c.block(p, j, drop_path=dpr[k], grid=[side, side] if side else None))
            k += 1
        ds = None
        if i < len(plan) - 1:
            ds = c.component("downsample", spec.downsample or DEFAULT_DOWNSAMPLE, ("downsample",),
                             (dim, dims[i + 1]))
            factor = int(getattr(ds, "reduction_factor", 2))
            side = math.ceil(side / factor) if side else None
            reduction = reduction * factor if reduction else None
        stages.append(Stage(blocks, ds))
    head = c.component("head", spec.head or DEFAULT_HEAD, ("head",), (dims[-1], spec.num_classes),
                       defaults={"drop": spec.drop_rate})
    return ArchModel(stem=stem, stages=stages, head=head, pos_embed=pos, spec=spec, layout="hierarchical",
                     dims=dims, in_chans=spec.in_chans, image_size=c.image_size, reduction=reductions[-1],
                     feature_reductions=reductions)
