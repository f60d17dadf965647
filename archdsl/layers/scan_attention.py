"""LocalVMamba's SCAttn: a gate that weighs one scan direction's output before the directions are
summed. ``x: [B, L, C] -> x * attn`` with (hidden r = int(C * ratio), LayerNorm'd input n)::

    g = GELU(global_reduce(mean_L(n)))               [B, 1, r]
    attn = sigmoid(channel_select(g))                [B, 1, C]   (channel attention)
    spatial: attn *= sigmoid(spatial_select([GELU(local_reduce(n)), g]))   [B, L, 1]

The official LocalVMamba code (hunto/LocalMamba ``BiAttn``) has the spatial branch commented out,
so its models use ``spatial=False``; the paper's SCAttn is ``spatial=True``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ScanAttention"]


class ScanAttention(nn.Module):
    """Channel (and optionally spatial) attention on ``x: [B, L, C]``; keys ``norm``,
    ``global_reduce``, ``channel_select`` (+ ``local_reduce``, ``spatial_select``)."""

    def __init__(self, dim: int, ratio: float = 0.125, spatial: bool = False):
        super().__init__()
        hidden = int(dim * ratio)
        if hidden < 1:
            raise ValueError(f"attention ratio {ratio} leaves no hidden channel for width {dim}")
        self.norm = nn.LayerNorm(dim)
        self.global_reduce = nn.Linear(dim, hidden)
        self.channel_select = nn.Linear(hidden, dim)
        self.spatial = spatial
        if spatial:
            self.local_reduce = nn.Linear(dim, hidden)
            self.spatial_select = nn.Linear(2 * hidden, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        g = self.act(self.global_reduce(n.mean(1, keepdim=True)))  # [B, 1, r]
        attn = torch.sigmoid(self.channel_select(g))  # [B, 1, C]
        if self.spatial:
            local = self.act(self.local_reduce(n))  # [B, L, r]
            attn = attn * torch.sigmoid(self.spatial_select(torch.cat([local, g.expand_as(local)], -1)))
        return x * attn
