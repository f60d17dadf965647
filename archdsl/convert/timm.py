"""Import timm checkpoints (``model.state_dict()`` of ``timm.create_model(...)``) into a compiled spec.

timm's hierarchical models keep their downsampler at the *start* of a stage (``layers.{s}.downsample``
for s >= 1); a compiled model keeps it at the *end* of the stage before (``stages.{s-1}.downsample``,
like the official Swin / MLLA code). The key rewrites, per architecture family (detected from keys):

    swin (swin_tiny_patch4_window7_224, ...):
        patch_embed.*               -> stem.*
        layers.{s}.blocks.{b}.*     -> stages.{s}.blocks.{b}.*      (same in-block names)
        layers.{s}.downsample.*     -> stages.{s-1}.downsample.*    (s >= 1)
        norm.*                      -> head.norm.*
        head.fc.* (or head.*)       -> head.fc.*
        *.relative_position_index, *.attn_mask -> dropped (recomputed)

Every mismatch (keys with no target, targets left without a value, shapes that differ) raises one
:class:`SpecError` listing a few of each, so a spec that is not the checkpoint's architecture fails
loudly instead of loading partially.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from archdsl.convert.fit import fit_state_dict, listing
from archdsl.errors import SpecError

__all__ = ["convert_timm_state_dict", "FAMILIES", "detect_family"]

Rule = Tuple[re.Pattern, Callable[[re.Match], Optional[str]]]

_DROPPED = re.compile(r"(^|\.)(relative_position_index|attn_mask)$")


def _swin_downsample(m: re.Match) -> Optional[str]:
    s = int(m.group(1))
    return f"stages.{s - 1}.downsample.{m.group(2)}" if s >= 1 else None


SWIN_RULES: List[Rule] = [
    (re.compile(r"^patch_embed\.(.+)$"), lambda m: f"stem.{m.group(1)}"),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$"), lambda m: f"stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}"),
    (re.compile(r"^layers\.(\d+)\.downsample\.(.+)$"), _swin_downsample),
    (re.compile(r"^norm\.(.+)$"), lambda m: f"head.norm.{m.group(1)}"),
    (re.compile(r"^head\.fc\.(.+)$"), lambda m: f"head.fc.{m.group(1)}"),
    (re.compile(r"^head\.(weight|bias)$"), lambda m: f"head.fc.{m.group(1)}"),
]

# family -> (a key pattern that identifies it, its rules)
FAMILIES: Dict[str, Tuple[re.Pattern, List[Rule]]] = {
    "swin": (re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$"), SWIN_RULES),
}


def detect_family(state: Mapping[str, torch.Tensor]) -> str:
    """The family whose identifying key occurs in ``state``; SpecError when none does."""
    for name, (probe, _) in FAMILIES.items():
        if any(probe.match(k) for k in state):
            return name
    raise SpecError(f"not a timm checkpoint of a supported architecture (known: {', '.join(FAMILIES)}); "
                    f"first keys: {listing(list(state))}")


def _rewrite(key: str, rules: List[Rule]) -> Optional[str]:
    for pattern, fn in rules:
        m = pattern.match(key)
        if m:
            return fn(m)
    return None


def convert_timm_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Map a timm state dict onto ``model``'s keys; returns exactly ``model.state_dict()``'s keys in
    its order. Raises :class:`SpecError` naming missing / unexpected / mis-shaped keys."""
    family = detect_family(state)
    rules = FAMILIES[family][1]
    mapped = [(key, _rewrite(key, rules), value) for key, value in state.items() if not _DROPPED.search(key)]
    return fit_state_dict(mapped, model.state_dict(), what=f"timm {family} weights",
                          hint="check the spec's embed_dim / depths / heads / window_size / num_classes")
