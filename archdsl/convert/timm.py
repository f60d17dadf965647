"""Import timm checkpoints (``model.state_dict()`` of ``timm.create_model(...)``) into a compiled spec.

timm's hierarchical models keep their downsampler at the *start* of a stage (``layers.{s}.downsample``
/ ``stages.{s}.downsample`` for s >= 1); a compiled model keeps it at the *end* of the stage before
(``stages.{s-1}.downsample``, like the official Swin / MLLA code). The key rewrites, per architecture
family (detected from keys; the first rule that matches a key wins):

    swin (swin_tiny_patch4_window7_224, ...):
        patch_embed.*               -> stem.*
        layers.{s}.blocks.{b}.*     -> stages.{s}.blocks.{b}.*      (same in-block names)
        layers.{s}.downsample.*     -> stages.{s-1}.downsample.*    (s >= 1)
        norm.*                      -> head.norm.*
        head.fc.* (or head.*)       -> head.fc.*
        *.relative_position_index, *.attn_mask -> dropped (recomputed)

    convnext (convnext_tiny, ...):
        stem.0.* / stem.1.*                 -> stem.proj.* / stem.norm.*
        stages.{s}.blocks.{b}.gamma         -> stages.{s}.blocks.{b}.ls.gamma
        stages.{s}.blocks.{b}.*             -> stages.{s}.blocks.{b}.*     (conv_dw, norm, mlp.fc1/fc2)
        stages.{s}.downsample.0.* / .1.*    -> stages.{s-1}.downsample.norm.* / .conv.*   (s >= 1)
        head.norm.*, head.fc.*              -> head.norm.*, head.fc.*

    vit (vit_small_patch16_224, deit_small_patch16_224, ...):
        patch_embed.*               -> stem.*
        cls_token                   -> cls_token.token
        pos_embed                   -> pos_embed.0.pos
        blocks.{b}.*                -> stages.0.blocks.{b}.*        (same in-block names)
        norm.*                      -> head.norm.*
        head.*                      -> head.fc.*

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


def _to_stage_before(sub: str) -> Callable[[re.Match], Optional[str]]:
    """A rule target for ``...{s}.downsample.<sub-key>.<rest>`` (groups: s, rest): the downsampler of
    stage s >= 1 moves to the end of stage s - 1, its module ``sub`` (``""``: same names)."""
    def target(m: re.Match) -> Optional[str]:
        s = int(m.group(1))
        return f"stages.{s - 1}.downsample.{sub}{m.group(2)}" if s >= 1 else None
    return target


def _rename(fmt: str) -> Callable[[re.Match], Optional[str]]:
    """A rule target that formats the match's groups into ``fmt`` (``{0}``, ``{1}``, ...)."""
    return lambda m: fmt.format(*m.groups())


SWIN_RULES: List[Rule] = [
    (re.compile(r"^patch_embed\.(.+)$"), _rename("stem.{0}")),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$"), _rename("stages.{0}.blocks.{1}.{2}")),
    (re.compile(r"^layers\.(\d+)\.downsample\.(.+)$"), _to_stage_before("")),
    (re.compile(r"^norm\.(.+)$"), _rename("head.norm.{0}")),
    (re.compile(r"^head\.fc\.(.+)$"), _rename("head.fc.{0}")),
    (re.compile(r"^head\.(weight|bias)$"), _rename("head.fc.{0}")),
]

CONVNEXT_RULES: List[Rule] = [
    (re.compile(r"^stem\.0\.(.+)$"), _rename("stem.proj.{0}")),
    (re.compile(r"^stem\.1\.(.+)$"), _rename("stem.norm.{0}")),
    (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$"), _rename("stages.{0}.blocks.{1}.ls.gamma")),
    (re.compile(r"^(stages\.\d+\.blocks\.\d+\..+)$"), _rename("{0}")),
    (re.compile(r"^stages\.(\d+)\.downsample\.0\.(.+)$"), _to_stage_before("norm.")),
    (re.compile(r"^stages\.(\d+)\.downsample\.1\.(.+)$"), _to_stage_before("conv.")),
    (re.compile(r"^(head\.(norm|fc)\..+)$"), _rename("{0}")),
]

VIT_RULES: List[Rule] = [
    (re.compile(r"^patch_embed\.(.+)$"), _rename("stem.{0}")),
    (re.compile(r"^cls_token$"), _rename("cls_token.token")),
    (re.compile(r"^pos_embed$"), _rename("pos_embed.0.pos")),
    (re.compile(r"^blocks\.(\d+)\.(.+)$"), _rename("stages.0.blocks.{0}.{1}")),
    (re.compile(r"^norm\.(.+)$"), _rename("head.norm.{0}")),
    (re.compile(r"^head\.(weight|bias)$"), _rename("head.fc.{0}")),
]

# family -> (a key pattern that identifies it, its rules)
FAMILIES: Dict[str, Tuple[re.Pattern, List[Rule]]] = {
    "swin": (re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$"), SWIN_RULES),
    "convnext": (re.compile(r"^stages\.\d+\.blocks\.\d+\.conv_dw\.weight$"), CONVNEXT_RULES),
    "vit": (re.compile(r"^blocks\.\d+\.attn\.qkv\.weight$"), VIT_RULES),
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
                          hint="check the spec's widths, depths, heads, window / patch / image size and num_classes")
