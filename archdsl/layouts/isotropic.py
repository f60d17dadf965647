"""Isotropic layout (ViT-like): patch-embedding stem, ``depth`` blocks of one width, optional
positional encoding (e.g. APE) after the stem, an optional class token (``class_token``: first as
ViT, middle as Vim; APE gets its position slot), head (``prefix_tokens`` tells it about the token)."""
from __future__ import annotations

import math
from typing import Any

from archdsl.layers.tokens import ClassToken
from archdsl.layouts.hierarchical import (
    DEFAULT_HEAD,
    build_posenc,
    check_heads,
    drop_path_schedule,
    stem_reduction,
)
from archdsl.layouts.model import ArchModel, Stage


def build_isotropic(spec: Any, c: Any) -> ArchModel:
    dim, depth = int(spec.dim), int(spec.depth)
    heads = int(spec.heads) if spec.heads is not None else None
    check_heads(spec, dim, heads, ("heads",))
    if spec.stem is None:
        stem_ref, defaults = {"type": "patch_embed", "patch_size": spec.patch_size}, None
    else:
        stem_ref, defaults = spec.stem, ({"patch_size": spec.patch_size} if spec.patch_size else None)
    stem = c.component("stem", stem_ref, ("stem",), (spec.in_chans, dim), defaults=defaults)
    r = stem_reduction(stem, spec.in_chans)
    side = math.ceil(c.image_size / r) if r else None
    cls_position = {True: "first", False: None}.get(spec.class_token, spec.class_token)
    pos = build_posenc(spec, c, dim, side, class_token=cls_position)
    dpr = drop_path_schedule(spec.drop_path or 0.0, depth)
    plan = spec.stage_plan()[0]
    blocks = [c.block(plan, j, drop_path=dpr[j], grid=[side, side] if side else None) for j in range(depth)]
    head = c.component("head", spec.head or DEFAULT_HEAD, ("head",), (dim, spec.num_classes),
                       defaults={"drop": spec.drop_rate, "prefix_tokens": 1 if cls_position else 0})
    cls_token = ClassToken(dim, cls_position) if cls_position else None
    return ArchModel(stem=stem, stages=[Stage(blocks, None)], head=head, pos_embed=pos, spec=spec,
                     layout="isotropic", dims=[dim], in_chans=spec.in_chans, image_size=c.image_size,
                     reduction=r, cls_token=cls_token)
