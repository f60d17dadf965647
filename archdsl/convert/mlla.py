"""Import official MLLA checkpoints (github.com/LeapLabTHU/MLLA, REFERENCE.md §5) into a compiled spec.

The official layout::

    patch_embed.<...>                       -> the model's mlla_stem module (same inner names)
    layers.{s}.blocks.{b}.<leaf path>       -> block b of stage s; leaf paths found by name
    layers.{s}.downsample.<...>             -> the s-th mlla_merge module (same inner names)
    norm.{weight,bias} / head.{weight,bias} -> the head's norm / classifier Linear
    *.attn.rope.rotations                   -> dropped (our RoPE tables are recomputed per input size)

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
import tempfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from archdsl.errors import SpecError
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
_MAX_LISTED = 5


def load_checkpoint(path: str) -> "OrderedDict[str, torch.Tensor]":
    """Read a checkpoint file (``torch.load``, ``weights_only=True``, CPU) and unwrap the state dict
    from ``{"model": ...}`` (the released MLLA files), ``{"state_dict": ...}`` or a bare dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise SpecError(f"checkpoint not found: {path}") from e
    except Exception as e:  # unpickling errors of all kinds: a user-supplied file
        raise SpecError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(f"{path} does not hold a state dict (a mapping of tensors, optionally under 'model')")
    sd = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())
    return sd


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


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


def convert_mlla_state_dict(official: Mapping[str, torch.Tensor], model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Map an official MLLA state dict onto ``model``'s keys (a compiled MLLA spec).

    Returns a state dict with exactly ``model.state_dict()``'s persistent keys (and shapes); raises
    :class:`SpecError` listing missing / unexpected / mis-shaped keys."""
    target = model.state_dict()
    tkeys = list(target)
    stem, merges, head, head_name = _find_stem_merge_head(model)
    if stem is None:
        raise SpecError("the model has no mlla_stem: official MLLA weights need a spec with stem: mlla_stem")
    blocks = _block_prefixes(tkeys)

    # official blocks per stage, to split ours the same way
    off_blocks: Dict[Tuple[int, int], None] = OrderedDict()
    for k in official:
        m = _BLOCK.match(k)
        if m:
            off_blocks[(int(m.group(1)), int(m.group(2)))] = None
    n_stages = 1 + max([s for s, _ in off_blocks] + [-1]) if off_blocks else 0
    depths = [1 + max([b for (s, b) in off_blocks if s == i] + [-1]) for i in range(n_stages)]
    if sum(depths) != len(blocks):
        raise SpecError(f"the checkpoint has {sum(depths)} MLLA blocks (depths {depths}) but the model has "
                        f"{len(blocks)}; set stages.depths to match "
                        f"(e.g. --set stages.depths=[{','.join(map(str, depths))}])")
    starts = [sum(depths[:i]) for i in range(n_stages)]

    by_block: Dict[str, List[str]] = {p: [] for p in blocks}
    for k in tkeys:
        owner = max((p for p in blocks if k.startswith(p)), key=len, default=None)
        if owner is not None:
            by_block[owner].append(k[len(owner):])

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unexpected: List[str] = []
    mis_shaped: List[str] = []
    ambiguous: List[str] = []
    shaped_targets: set = set()

    def put(src: str, dst: Optional[str], value: torch.Tensor) -> None:
        if dst is None or dst not in target:
            unexpected.append(src)
        elif tuple(target[dst].shape) != tuple(value.shape):
            mis_shaped.append(f"{src} {tuple(value.shape)} vs model {dst} {tuple(target[dst].shape)}")
            shaped_targets.add(dst)
        else:
            out[dst] = value

    for key, value in official.items():
        if DROPPED.search(key):
            continue
        if key.startswith("patch_embed."):
            put(key, _join(stem, key[len("patch_embed."):]), value)
            continue
        m = _DOWN.match(key)
        if m:
            s = int(m.group(1))
            put(key, _join(merges[s], m.group(2)) if s < len(merges) else None, value)
            continue
        m = _BLOCK.match(key)
        if m:
            s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            if b >= depths[s]:
                unexpected.append(key)
                continue
            prefix = blocks[starts[s] + b]
            dst = None
            for cand in MIXER_ALIASES.get(rest, (rest,)):
                hits = [r for r in by_block[prefix] if r == cand or r.endswith("." + cand)]
                if len(hits) > 1:  # prefer the shallowest (e.g. block 'dwc' over a nested '.dwc')
                    hits.sort(key=lambda r: r.count("."))
                    if hits[0].count(".") == hits[1].count("."):
                        ambiguous.append(f"{key} -> {', '.join(hits[:3])}")
                        break
                if hits:
                    dst = prefix + hits[0]
                    break
            put(key, dst, value)
            continue
        if head is not None and key.startswith("norm."):
            put(key, _join(head_name, "norm." + key[len("norm."):]), value)
        elif head is not None and key.startswith("head."):
            put(key, _join(head_name, "fc." + key[len("head."):]), value)
        else:
            unexpected.append(key)

    missing = [k for k in tkeys if k not in out and k not in shaped_targets]
    problems = []
    if missing:
        problems.append(f"missing in the checkpoint: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected in the checkpoint: {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatch: {_listing(mis_shaped)}")
    if ambiguous:
        problems.append(f"ambiguous target: {_listing(ambiguous)}")
    if problems:
        raise SpecError("official MLLA weights do not fit the model: " + "; ".join(problems)
                        + " (check the spec's embed_dim / depths / heads / num_classes)")
    return OrderedDict((k, out[k]) for k in tkeys)


def load_official_mlla(model: nn.Module, checkpoint: str) -> nn.Module:
    """Convert ``checkpoint`` and load it into ``model`` (strict); returns ``model``."""
    model.load_state_dict(convert_mlla_state_dict(load_checkpoint(checkpoint), model), strict=True)
    return model


def save_state_dict(state: Mapping[str, torch.Tensor], path: str) -> None:
    """Write ``state`` with ``torch.save`` atomically (a temporary file in the same folder, then
    ``os.replace``), so an interrupted run never leaves a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
