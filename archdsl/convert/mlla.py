"""Import official MLLA checkpoints (github.com/LeapLabTHU/MLLA, docs/paper.md §5) into a compiled spec.

The official layout::

    patch_embed.<...>                       -> the model's mlla_stem module (same inner names)
    layers.{s}.blocks.{b}.<leaf path>       -> block b of stage s; leaf paths found by name
    layers.{s}.downsample.<...>             -> the s-th mlla_merge module (same inner names)
    norm.{weight,bias} / head.{weight,bias} -> the head's norm / classifier Linear
    norm{i}.{weight,bias}                   -> the backbone's per-output norms (detection / segmentation
                                               checkpoints, official downstream/*/backbones/mlla.py)
    *.attn.rope.rotations                   -> dropped (our RoPE tables are recomputed per input size)

Into a backbone (a ``features_only`` model, no head) a classification checkpoint loads too: its
``norm.*`` / ``head.*`` are dropped and the model's ``norm{i}`` keep their initial values (identity
affine), both listed in the ``report`` (as the official detection code's non-strict load would do).
A whole detector / segmenter checkpoint (``backbone.*`` beside ``neck.*``, heads...) converts its
``backbone.*`` part.

Inside a block the MLLA template names every module like the official code (``cpe1``, ``norm1``,
``in_proj``, ``dwc``, ``attn``, ``act_proj``, ``out_proj``, ``cpe2``, ``norm2``, ``mlp``), but the
compiler may nest them in combinator containers; so an official in-block key ``o`` is mapped to the
unique key of that block equal to ``o`` or ending in ``"." + o`` (after :data:`MIXER_ALIASES`).
Blocks are found structurally: the block prefixes are the parents of the modules named ``cpe1``, in
model order, split into stages by the number of official blocks per stage.

Every mismatch (official keys with no target, model keys left without a value, shapes that differ)
raises one :class:`SpecError` that lists a few of each.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from archdsl.convert.checkpoint import read_checkpoint
from archdsl.convert.fit import fit_state_dict
from archdsl.errors import SpecError
from archdsl.files import write_atomic
from archdsl.layers.mlla import MLLAMerge, MLLAStem

__all__ = ["load_checkpoint", "convert_mlla_state_dict", "load_official_mlla", "save_state_dict",
           "MIXER_ALIASES", "DROPPED"]

# official in-block suffix -> alternatives tried in the model (first unique match wins)
MIXER_ALIASES: Dict[str, Tuple[str, ...]] = {
    "attn.qk.weight": ("attn.qk.weight",),
    "attn.qk.bias": ("attn.qk.bias",),
    "attn.lepe.weight": ("attn.lepe.weight", "attn.lepe.conv.weight", "attn.lepe.dwconv.weight"),
    "attn.lepe.bias": ("attn.lepe.bias", "attn.lepe.conv.bias", "attn.lepe.dwconv.bias"),
}
DROPPED = re.compile(r"(^|\.)rope\.rotations$")
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWN = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_OUT_NORM = re.compile(r"^norm\d+\.")
_CLASSIFIER = re.compile(r"^(norm|head)\.")


def load_checkpoint(path: str) -> "OrderedDict[str, torch.Tensor]":
    """Read a checkpoint file (``torch.load``, ``weights_only=True``, CPU) and unwrap the state dict
    from ``{"model": ...}`` (the released MLLA files), ``{"state_dict": ...}`` or a bare dict."""
    obj = read_checkpoint(path)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(f"{path} does not hold a state dict (a mapping of tensors, optionally under 'model')")
    sd = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())
    return sd


def _find_stem_merge_head(model: nn.Module) -> Tuple[Optional[str], List[str], Optional[nn.Module], str]:
    stem_cls, merge_cls = MLLAStem, MLLAMerge
    stem, merges, head, head_name = None, [], None, ""
    for name, mod in model.named_modules():
        if isinstance(mod, stem_cls) and stem is None:
            stem = name
        elif isinstance(mod, merge_cls):
            merges.append(name)
    # the head: the last module holding a LayerNorm followed by a Linear (norm_pool_linear)
    for name, mod in model.named_modules():
        if isinstance(getattr(mod, "norm", None), nn.LayerNorm) and isinstance(getattr(mod, "fc", None), nn.Linear):
            head, head_name = mod, name
    return stem, merges, head, head_name


def _block_prefixes(model_keys: List[str]) -> List[str]:
    """Prefixes (``'...'`` ending with '.', or '') of the blocks, in model order: parents of ``cpe1``."""
    out: List[str] = []
    for k in model_keys:
        if k == "cpe1.weight" or k.endswith(".cpe1.weight"):
            prefix = k[: -len("cpe1.weight")]
            if prefix not in out:
                out.append(prefix)
    return out


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix else rest


@dataclass
class _Layout:
    """Where the official modules live in ``model``: stem / merge / head prefixes and the blocks,
    split into stages as the checkpoint's ``layers.S.blocks.B`` are."""

    stem: str
    merges: List[str]
    head_name: str
    has_head: bool
    blocks: List[str]                  # block prefixes in model order
    depths: List[int]                  # official blocks per stage
    by_block: Dict[str, List[str]]     # block prefix -> its keys (relative)

    def block_prefix(self, stage: int, index: int) -> Optional[str]:
        if stage >= len(self.depths) or index >= self.depths[stage]:
            return None
        return self.blocks[sum(self.depths[:stage]) + index]


def _layout(official: Mapping[str, torch.Tensor], model: nn.Module, tkeys: List[str]) -> _Layout:
    stem, merges, head, head_name = _find_stem_merge_head(model)
    if stem is None:
        raise SpecError("the model has no mlla_stem: official MLLA weights need a spec with stem: mlla_stem")
    blocks = _block_prefixes(tkeys)
    stage_blocks = {(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK.match, official) if m}
    n_stages = 1 + max((s for s, _ in stage_blocks), default=-1)
    depths = [1 + max((b for (s, b) in stage_blocks if s == i), default=-1) for i in range(n_stages)]
    if sum(depths) != len(blocks):
        raise SpecError(f"the checkpoint has {sum(depths)} MLLA blocks (depths {depths}) but the model has "
                        f"{len(blocks)}; set stages.depths to match "
                        f"(e.g. --set stages.depths=[{','.join(map(str, depths))}])")
    by_block: Dict[str, List[str]] = {p: [] for p in blocks}
    for k in tkeys:
        owner = max((p for p in blocks if k.startswith(p)), key=len, default=None)
        if owner is not None:
            by_block[owner].append(k[len(owner):])
    return _Layout(stem, merges, head_name, head is not None, blocks, depths, by_block)


def _block_target(rest: str, prefix: str, layout: _Layout) -> Tuple[Optional[str], Optional[str]]:
    """-> (model key, ambiguity note) for the official block key ``rest`` inside block ``prefix``."""
    for cand in MIXER_ALIASES.get(rest, (rest,)):
        hits = [r for r in layout.by_block[prefix] if r == cand or r.endswith("." + cand)]
        if len(hits) > 1:  # prefer the shallowest (e.g. block 'dwc' over a nested '.dwc')
            hits.sort(key=lambda r: r.count("."))
            if hits[0].count(".") == hits[1].count("."):
                return None, ", ".join(hits[:3])
        if hits:
            return prefix + hits[0], None
    return None, None


def _target(key: str, layout: _Layout) -> Tuple[Optional[str], Optional[str]]:
    """-> (model key or None, ambiguity note) for one official key."""
    if key.startswith("patch_embed."):
        return _join(layout.stem, key[len("patch_embed."):]), None
    m = _DOWN.match(key)
    if m:
        s = int(m.group(1))
        return (_join(layout.merges[s], m.group(2)) if s < len(layout.merges) else None), None
    m = _BLOCK.match(key)
    if m:
        prefix = layout.block_prefix(int(m.group(1)), int(m.group(2)))
        return _block_target(m.group(3), prefix, layout) if prefix is not None else (None, None)
    if layout.has_head and key.startswith("norm."):
        return _join(layout.head_name, "norm." + key[len("norm."):]), None
    if layout.has_head and key.startswith("head."):
        return _join(layout.head_name, "fc." + key[len("head."):]), None
    if _OUT_NORM.match(key):
        return key, None
    return None, None


def _backbone_part(official: Mapping[str, torch.Tensor]) -> Tuple[Mapping[str, torch.Tensor], List[str]]:
    """A whole mmdet / mmseg model (``backbone.*``, ``neck.*``, ``rpn_head.*``, ``decode_head.*``...)
    -> (its ``backbone.*`` keys without the prefix, the other keys); a backbone alone is unchanged."""
    if not any(k.startswith("backbone.") for k in official):
        return official, []
    inner = OrderedDict((k[len("backbone."):], v) for k, v in official.items() if k.startswith("backbone."))
    return inner, [k for k in official if not k.startswith("backbone.")]


def convert_mlla_state_dict(official: Mapping[str, torch.Tensor], model: nn.Module,
                            report: Optional[Dict[str, List[str]]] = None) -> "OrderedDict[str, torch.Tensor]":
    """Map an official MLLA state dict onto ``model``'s keys (a compiled MLLA spec, or its
    ``features_only`` backbone).

    Returns a state dict with exactly ``model.state_dict()``'s persistent keys (and shapes); raises
    :class:`SpecError` listing missing / unexpected / mis-shaped keys. For a backbone, ``report``
    (when given) receives ``dropped_classifier`` (checkpoint keys of the classification head),
    ``initialised`` (the model's ``norm{i}`` keys the checkpoint lacks, kept at their initial values)
    and ``dropped_task`` (a whole detector's / segmenter's non-backbone keys, see :func:`_backbone_part`)."""
    backbone = getattr(model, "features_only", False)
    task: List[str] = []
    if backbone:
        official, task = _backbone_part(official)
    target = model.state_dict()
    layout = _layout(official, model, list(target))
    mapped, ambiguous, dropped = [], [], []
    for key, value in official.items():
        if DROPPED.search(key):
            continue
        if backbone and _CLASSIFIER.match(key):
            dropped.append(key)
            continue
        dst, note = _target(key, layout)
        if note is not None:
            ambiguous.append(f"{key} -> {note}")
        else:
            mapped.append((key, dst, value))
    unplaced_norms = any(_OUT_NORM.match(key) and (dst is None or dst not in target) for key, dst, _ in mapped)
    initialised: List[str] = []
    out = fit_state_dict(
        mapped, target, what="official MLLA weights", ambiguous=ambiguous,
        hint="check the spec's embed_dim / depths / heads / num_classes",
        extra_hint=(" (the checkpoint has per-output norms norm{i}: it needs a backbone with features.norm=true, "
                    "as import-weights --features-only builds)") if unplaced_norms else "",
        keep=lambda key: backbone and bool(_OUT_NORM.match(key)), kept=initialised)
    if report is not None:
        report.update(dropped_classifier=dropped, initialised=initialised, dropped_task=task)
    return out


def load_official_mlla(model: nn.Module, checkpoint: str) -> nn.Module:
    """Convert ``checkpoint`` and load it into ``model`` (strict); returns ``model``."""
    model.load_state_dict(convert_mlla_state_dict(load_checkpoint(checkpoint), model), strict=True)
    return model


def save_state_dict(state: Mapping[str, torch.Tensor], path: str) -> None:
    """Write ``state`` with ``torch.save`` atomically (a temporary file in the same folder, then
    ``os.replace``), so an interrupted run never leaves a half-written file. A folder, a read-only
    place or a full disk is a :class:`SpecError` naming ``path``."""
    if os.path.isdir(path):
        raise SpecError(f"cannot write {path}: it is a directory (give a file name, e.g. {path}/weights.pt)")
    try:
        write_atomic(path, lambda tmp: torch.save(dict(state), tmp), suffix=".pt")
    except OSError as e:  # disk full, read-only place, ...
        raise SpecError(f"cannot write {path}: {e.strerror or e}") from None
