"""2-D scan orders for recurrent mixers (row-major, column-major, reversed; VMamba cross-scan).

A grid position (i, j) of an H×W map has row-major index p = i·W + j. ``scan_indices(H, W, order)``
returns idx [L] (L = H·W) so that the scanned sequence is ``x_rowmajor[..., idx]``:
  row          p = 0, 1, ..., L-1                 (row-major)
  col          (0,0), (1,0), ..., (H-1,0), (0,1), ... (column-major)
  row_reverse  row order reversed;  col_reverse  col order reversed.
``cross_scan`` stacks several orders ([B, K, C, L]); ``cross_merge`` maps each back to row-major
and sums over the K directions ([B, C, L]) — VMamba's CrossScan / CrossMerge.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from .tracing import trace_safe_cache

__all__ = [
    "SCAN_ORDERS",
    "BIDIRECTIONAL",
    "CROSS_SCAN_4",
    "scan_indices",
    "inverse_indices",
    "cross_scan",
    "cross_merge",
]

SCAN_ORDERS: Tuple[str, ...] = ("row", "col", "row_reverse", "col_reverse")
BIDIRECTIONAL: Tuple[str, ...] = ("row", "row_reverse")
CROSS_SCAN_4: Tuple[str, ...] = ("row", "col", "row_reverse", "col_reverse")


@trace_safe_cache(maxsize=64)
def _indices(H: int, W: int, order: str) -> torch.Tensor:
    grid = torch.arange(H * W).reshape(H, W)
    if order == "row":
        idx = grid.flatten()
    elif order == "col":
        idx = grid.t().flatten()
    elif order == "row_reverse":
        idx = grid.flatten().flip(0)
    elif order == "col_reverse":
        idx = grid.t().flatten().flip(0)
    else:
        raise ValueError(f"unknown scan order {order!r}; expected one of: {', '.join(SCAN_ORDERS)}")
    return idx


def scan_indices(H: int, W: int, order: str, device=None) -> torch.Tensor:
    """Row-major positions visited by scan ``order`` on an H×W grid: int64 [H*W]."""
    if H < 1 or W < 1:
        raise ValueError(f"grid must be at least 1x1; got {H}x{W}")
    return _indices(int(H), int(W), order).to(device)


def inverse_indices(H: int, W: int, order: str, device=None) -> torch.Tensor:
    """inv [H*W] with ``seq[..., inv] == x_rowmajor`` when ``seq = x_rowmajor[..., idx]``."""
    idx = _indices(int(H), int(W), order)
    inv = torch.empty_like(idx)
    inv[idx] = torch.arange(idx.numel())
    return inv.to(device)


def _check_dirs(directions: Sequence[str]) -> Tuple[str, ...]:
    dirs = (directions,) if isinstance(directions, str) else tuple(directions)
    if not dirs:
        raise ValueError("directions must name at least one scan order")
    for d in dirs:
        if d not in SCAN_ORDERS:
            raise ValueError(f"unknown scan order {d!r}; expected one of: {', '.join(SCAN_ORDERS)}")
    return dirs


def cross_scan(x: torch.Tensor, directions: Sequence[str] = CROSS_SCAN_4) -> torch.Tensor:
    """``x: [B, C, H, W] -> [B, K, C, L]``: the map read in each of the K scan orders."""
    if x.dim() != 4:
        raise ValueError(f"expected x [B, C, H, W]; got shape {tuple(x.shape)}")
    dirs = _check_dirs(directions)
    B, C, H, W = x.shape
    flat = x.reshape(B, C, H * W)
    return torch.stack([flat[..., scan_indices(H, W, d, x.device)] for d in dirs], dim=1)


def cross_merge(y: torch.Tensor, H: int, W: int, directions: Sequence[str] = CROSS_SCAN_4) -> torch.Tensor:
    """``y: [B, K, C, L] -> [B, C, L]`` (row-major): each sequence un-permuted, summed over K."""
    dirs = _check_dirs(directions)
    if y.dim() != 4 or y.shape[1] != len(dirs) or y.shape[-1] != H * W:
        raise ValueError(
            f"expected y [B, {len(dirs)}, C, {H * W}] for {len(dirs)} directions on a {H}x{W} grid; "
            f"got {tuple(y.shape)}"
        )
    out = y[:, 0][..., inverse_indices(H, W, dirs[0], y.device)]
    for k in range(1, len(dirs)):
        out = out + y[:, k][..., inverse_indices(H, W, dirs[k], y.device)]
    return out
