"""Atrous (skip-sampled) 2-D scan of EfficientVMamba (Pei et al. 2024, "ES2D").

The H×W map, zero-padded bottom/right to even sizes Hp×Wp, is split into its four stride-2
sub-grids; each is read by one scan direction (``ATROUS_DIRECTIONS``, official ``EfficientScan``):

    k  rows   cols   order
    0  0::2   0::2   row-major
    1  1::2   0::2   column-major
    2  0::2   1::2   row-major
    3  1::2   1::2   column-major

Every sequence has L' = (Hp/2)·(Wp/2) tokens, so the four together read each padded position exactly
once (about H·W tokens in all, a quarter of VMamba's cross-scan). ``atrous_scan(x[B,C,H,W]) ->
[B,4,C,L']``; ``atrous_merge(y[B,4,C,L'], H, W) -> [B,C,H*W]`` writes each output back at the
position it was read from (no sum: each position has one) and drops the padding. The padding
tokens are zeros that the scans read like any other token, as the official code does.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .tracing import trace_safe_cache

__all__ = ["ATROUS_DIRECTIONS", "atrous_indices", "atrous_scan", "atrous_merge"]

# (row phase, column phase, order) of each direction
ATROUS_DIRECTIONS: Tuple[Tuple[int, int, str], ...] = ((0, 0, "row"), (1, 0, "col"), (0, 1, "row"), (1, 1, "col"))


def _padded(H: int, W: int) -> Tuple[int, int]:
    return H + H % 2, W + W % 2


@trace_safe_cache(maxsize=64)
def _indices(H: int, W: int) -> torch.Tensor:
    Hp, Wp = _padded(H, W)
    grid = torch.arange(Hp * Wp).reshape(Hp, Wp)
    rows = [grid[a::2, b::2] if order == "row" else grid[a::2, b::2].t() for a, b, order in ATROUS_DIRECTIONS]
    return torch.stack([r.flatten() for r in rows])


def atrous_indices(H: int, W: int, device=None) -> torch.Tensor:
    """idx [4, L']: the positions (row-major on the padded Hp×Wp grid) each direction reads, in order."""
    if H < 1 or W < 1:
        raise ValueError(f"grid must be at least 1x1; got {H}x{W}")
    return _indices(int(H), int(W)).to(device)


def atrous_scan(x: torch.Tensor) -> torch.Tensor:
    """``x: [B, C, H, W] -> [B, 4, C, L']``: the four skip-sampled sub-grids, each in its order."""
    if x.dim() != 4:
        raise ValueError(f"expected x [B, C, H, W]; got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    Hp, Wp = _padded(H, W)
    flat = F.pad(x, (0, Wp - W, 0, Hp - H)).reshape(B, C, Hp * Wp)
    idx = atrous_indices(H, W, x.device)  # [4, L']
    return flat[..., idx.flatten()].reshape(B, C, 4, -1).transpose(1, 2)


def atrous_merge(y: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``y: [B, 4, C, L'] -> [B, C, H*W]`` (row-major): each output at the position it was read from."""
    Hp, Wp = _padded(H, W)
    if y.dim() != 4 or y.shape[1] != 4 or 4 * y.shape[-1] != Hp * Wp:
        raise ValueError(f"expected y [B, 4, C, {Hp * Wp // 4}] for a {H}x{W} grid; got {tuple(y.shape)}")
    B, _, C, _ = y.shape
    idx = atrous_indices(H, W, y.device).flatten()  # a permutation of the Hp*Wp padded positions
    inv = torch.empty_like(idx)
    inv[idx] = torch.arange(idx.numel(), device=idx.device)
    grid = y.transpose(1, 2).reshape(B, C, Hp * Wp)[..., inv].reshape(B, C, Hp, Wp)
    return grid[..., :H, :W].reshape(B, C, H * W)
