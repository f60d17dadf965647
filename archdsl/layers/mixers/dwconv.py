"""``dwconv``: a local-only token mixer (depthwise k x k convolution, then a linear projection).

x: [B, N, C] on the grid (H, W) -> [B, N, C]. Parameters: ``conv`` Conv2d(C, C, k, groups=C),
``proj`` Linear(C, C). Each output token sees only its k x k neighbourhood, so a stack of L such
mixers sees (L(k-1)+1)^2 tokens: the baseline a global mixer has to beat on long-range tasks
(``archdsl.data`` task ``farpairs``).
"""
from __future__ import annotations

import torch
from torch import nn

from archdsl.layers.base import HW, TokenModule, check_tokens, map_to_tokens, tokens_to_map
from archdsl.layers.mixers import check_dim_heads
from archdsl.registry import register


@register("mixer", "dwconv")
class DWConvMixer(TokenModule):
    """Depthwise ``kernel x kernel`` convolution (zero padding, same size) + Linear(C, C).
    ``heads`` is accepted for the mixer contract and must divide ``dim``; it has no effect."""

    def __init__(self, dim: int, heads: int = 1, kernel: int = 3):
        super().__init__()
        check_dim_heads(dim, heads)
        if not isinstance(kernel, int) or isinstance(kernel, bool) or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd integer; got {kernel!r}")
        self.dim, self.kernel = dim, kernel
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        check_tokens(x, hw, self.dim, "dwconv")
        y, _ = map_to_tokens(self.conv(tokens_to_map(x, hw)))     # [B, N, C]
        return self.proj(y)
