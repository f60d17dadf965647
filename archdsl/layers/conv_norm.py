"""A convolution with its norm (and activation) on the token grid, the building piece of the
convolutional stems and downsamplers: ``(x[B, H*W, C_in], (H, W)) -> (x'[B, H'*W', C_out], (H', W'))``.

``norm_position: after`` is ``conv -> norm -> act`` (ResNet, MambaOut, MLLA); ``before`` is
``norm -> conv -> act`` (ConvNeXt's downsampler: LayerNorm2d then a 2x2 stride-2 conv). A norm on
tokens acts on each token's channels, so ``layernorm`` here is timm's channels-first LayerNorm2d.
The padding follows :func:`archdsl.layers.padding.conv_padding` (a kernel/stride pair that would
drop pixels or change the size needs an explicit ``padding``).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, tokens_to_map
from archdsl.layers.padding import conv_padding
from archdsl.layers.primitives import Activation, make_norm

__all__ = ["ConvNormAct", "NORM_POSITIONS"]

NORM_POSITIONS = ("after", "before")


class ConvNormAct(nn.Module):
    """``Conv2d(cin, cout, kernel, stride, padding, bias)`` with a token norm (``norm``: layernorm |
    batchnorm | rmsnorm | groupnorm | None) before or after it and an optional activation last.
    Attributes ``conv``, ``norm`` (None without one), ``act`` (None without one)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: Optional[int] = None,
                 bias: bool = True, norm: Optional[str] = None, norm_eps: Optional[float] = None,
                 norm_position: str = "after", act: Optional[str] = None, what: str = "conv"):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {', '.join(NORM_POSITIONS)}, got {norm_position!r}")
        pad = conv_padding(kernel, stride, padding, what)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=bias)
        self.norm_first = norm_position == "before"
        has_norm = norm is not None and norm != "none"
        self.norm = make_norm(norm, cin if self.norm_first else cout, norm_eps) if has_norm else None
        self.act = Activation(act) if act else None
        self.stride = stride

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        if self.norm is not None and self.norm_first:
            x = self.norm(x, hw)
        x, hw = map_to_tokens(self.conv(tokens_to_map(x, hw)))
        if self.norm is not None and not self.norm_first:
            x = self.norm(x, hw)
        if self.act is not None:
            x = self.act(x)
        return x, hw
