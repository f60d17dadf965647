"""Squeeze-and-excitation channel attention for block templates (the ``squeeze_excite`` primitive).

``SqueezeExcite(dim, ratio, channels, act, norm)``: ``x * sigmoid(expand(act(reduce(mean_N(norm(x))))))``,
x: [B, N, C] -> [B, N, C]. ``reduce``: Linear(C, R), ``expand``: Linear(R, C), both with bias
(a 1x1 conv on the pooled map is the same function and parameters); R = ``channels`` or
``max(1, int(C * ratio))``. ``norm`` (None or a token norm name) normalises the tokens before they
are averaged; the input itself is what gets scaled. MobileNetV2/EfficientNet's SE: no norm, ReLU or
SiLU; EfficientVMamba's ``BiAttn``: ``norm: layernorm, act: gelu, ratio: 0.125``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from archdsl.layers.base import HW, TokenModule
from archdsl.layers.primitives import Activation, make_norm

__all__ = ["SqueezeExcite"]


class SqueezeExcite(TokenModule):
    """``x * sigmoid(expand(act(reduce(mean over tokens of norm(x)))))``; x: [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, ratio: float = 0.25, channels: Optional[int] = None, act: str = "relu",
                 norm: Optional[str] = None):
        super().__init__()
        if channels is None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
                raise ValueError(f"ratio must be a number in (0, 1]; got {ratio!r}")
            channels = max(1, int(dim * ratio))
        elif isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer; got {channels!r}")
        self.dim, self.channels = dim, channels
        self.norm = None if norm is None else make_norm(norm, dim)
        self.reduce = nn.Linear(dim, channels)
        self.act = Activation(act)
        self.expand = nn.Linear(channels, dim)

    def forward(self, x: torch.Tensor, hw: Optional[HW] = None) -> torch.Tensor:
        s = (x if self.norm is None else self.norm(x, hw)).mean(dim=1, keepdim=True)  # [B, 1, C]
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, channels={self.channels}"
