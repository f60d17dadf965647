"""Kernel feature maps phi(.) for linear attention, applied on the last (key) dim."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

FeatureMap = Callable[[torch.Tensor], torch.Tensor]


def _elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1.0


def _relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


_FEATURE_MAPS: dict[str, FeatureMap] = {
    "elu_plus_one": _elu_plus_one,
    "relu": _relu,
    "identity": _identity,
    "softmax": _softmax,
}

FEATURE_MAP_NAMES: tuple[str, ...] = tuple(_FEATURE_MAPS)


def feature_map(name: str) -> FeatureMap:
    """Return the feature map called ``name``: elu_plus_one, relu, identity or softmax.

    ``softmax`` is taken over the last (key) dim, per token. Shapes are preserved: ``[..., K]``.
    Raises ValueError naming the allowed names for anything else.
    """
    try:
        return _FEATURE_MAPS[name]
    except (KeyError, TypeError):
        allowed = ", ".join(FEATURE_MAP_NAMES)
        raise ValueError(f"unknown feature map {name!r}; expected one of: {allowed}") from None
