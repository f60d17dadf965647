"""Fit converted tensors onto a model's state dict, naming every mismatch in one error."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable, List, Mapping, Optional, Tuple

import torch

from archdsl.errors import SpecError

_MAX_LISTED = 5


def listing(keys: Iterable[str]) -> str:
    """The first few keys, then how many there are in all."""
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def fit_state_dict(mapped: Iterable[Tuple[str, Optional[str], torch.Tensor]], target: Mapping[str, torch.Tensor],
                   *, what: str, hint: str, ambiguous: Iterable[str] = (), extra_hint: str = "",
                   keep: Callable[[str], bool] = lambda key: False,
                   kept: Optional[List[str]] = None) -> "OrderedDict[str, torch.Tensor]":
    """``mapped``: (source key, model key or None, tensor). Returns exactly ``target``'s keys, in its
    order; else one :class:`SpecError` "<what> do not fit the model: missing ...; unexpected ...;
    shape mismatch ...; ambiguous ... (<hint>)<extra_hint>" (a key with the wrong shape is reported
    only once). Model keys the checkpoint lacks for which ``keep(key)`` holds keep ``target``'s value
    (listed in ``kept`` when given) instead of being missing."""
    out, unexpected, mis_shaped, shaped = {}, [], [], set()
    for key, dst, value in mapped:
        if dst is None or dst not in target:
            unexpected.append(key)
        elif tuple(target[dst].shape) != tuple(value.shape):
            mis_shaped.append(f"{key} {tuple(value.shape)} vs model {dst} {tuple(target[dst].shape)}")
            shaped.add(dst)
        else:
            out[dst] = value
    initialised = [k for k in target if k not in out and k not in shaped and keep(k)]
    out.update((k, target[k]) for k in initialised)
    if kept is not None:
        kept.extend(initialised)
    missing: List[str] = [k for k in target if k not in out and k not in shaped]
    problems = [f"{name}: {listing(keys)}" for name, keys in (
        ("missing in the checkpoint", missing), ("unexpected in the checkpoint", unexpected),
        ("shape mismatch", mis_shaped), ("ambiguous target", list(ambiguous))) if keys]
    if problems:
        raise SpecError(f"{what} do not fit the model: " + "; ".join(problems) + f" ({hint})" + extra_hint)
    return OrderedDict((k, out[k]) for k in target)
