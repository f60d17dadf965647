"""Swin window ops: partition/reverse (with padding), the shifted-window mask, relative positions.

Layout follows the official Swin code: windows are ordered (batch, window row, window column),
tokens inside a window row-major. Padding (bottom/right, zeros) makes H, W multiples of ``ws``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..tracing import trace_safe_cache


def _check_ws(ws: int) -> None:
    if not isinstance(ws, int) or ws < 1:
        raise ValueError(f"window size must be a positive int; got {ws!r}")


def padded_size(H: int, W: int, ws: int) -> Tuple[int, int]:
    """(Hp, Wp): H and W rounded up to multiples of ``ws``."""
    _check_ws(ws)
    return H + (-H) % ws, W + (-W) % ws


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``x: [B, H, W, C] -> windows [B*nW, ws*ws, C]``; H, W zero-padded to multiples of ws.

    nW = (Hp/ws)·(Wp/ws). Undo with :func:`window_reverse` (which crops the padding).
    """
    if x.dim() != 4:
        raise ValueError(f"expected x [B, H, W, C]; got shape {tuple(x.shape)}")
    B, H, W, C = x.shape
    Hp, Wp = padded_size(H, W, ws)
    if (Hp, Wp) != (H, W):
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    x = x.reshape(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """``windows [B*nW, ws*ws, C] -> x [B, H, W, C]`` (inverse of partition, padding cropped)."""
    Hp, Wp = padded_size(H, W, ws)
    nW = (Hp // ws) * (Wp // ws)
    if windows.dim() != 3 or windows.shape[1] != ws * ws or windows.shape[0] % nW:
        raise ValueError(
            f"expected windows [B*{nW}, {ws * ws}, C] for a {H}x{W} grid and window {ws}; "
            f"got {tuple(windows.shape)}"
        )
    B = windows.shape[0] // nW
    C = windows.shape[-1]
    x = windows.reshape(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(B, Hp, Wp, C)
    return x[:, :H, :W].contiguous() if (Hp, Wp) != (H, W) else x


def _region_labels(Hp: int, Wp: int, ws: int, shift: int) -> torch.Tensor:
    img = torch.zeros(Hp, Wp)
    if shift > 0:
        cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        cnt = 0
        for hs in cuts:
            for wsl in cuts:
                img[hs, wsl] = cnt
                cnt += 1
    return img


@trace_safe_cache(maxsize=32)
def _shifted_window_mask(
    H: int, W: int, ws: int, shift: int, fill: float, mask_padding: bool, device, dtype
) -> torch.Tensor:
    # Cached across calls, so never an inference tensor: one first made under
    # torch.inference_mode() could not be saved for backward by a later training step.
    with torch.inference_mode(False):
        Hp, Wp = padded_size(H, W, ws)
        labels = _region_labels(Hp, Wp, ws, shift).reshape(1, Hp, Wp, 1)
        lw = window_partition(labels, ws).squeeze(-1)  # [nW, ws*ws]
        blocked = lw.unsqueeze(1) != lw.unsqueeze(2)  # [nW, q, k]
        if mask_padding and (Hp, Wp) != (H, W):
            pad = torch.ones(Hp, Wp)
            pad[:H, :W] = 0
            pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1)).reshape(1, Hp, Wp, 1)
            pw = window_partition(pad, ws).squeeze(-1).bool()  # [nW, ws*ws]
            blocked = blocked | pw.unsqueeze(1)
        mask = torch.zeros(blocked.shape, dtype=dtype).masked_fill(blocked, fill)
        return mask.to(device)


def shifted_window_mask(
    H: int,
    W: int,
    ws: int,
    shift: int,
    *,
    fill: float = -100.0,
    mask_padding: bool = False,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive Swin mask [nW, ws*ws, ws*ws] for the (padded, rolled by -shift) H×W grid.

    Pairs of tokens from different regions of the cyclic shift get ``fill`` (Swin uses -100;
    pass ``float('-inf')`` for an exact mask), others 0. ``shift == 0`` gives all zeros.
    ``mask_padding=True`` also blocks padded key tokens (official Swin lets them participate).
    Cached (LRU); treat the result as read-only.
    """
    _check_ws(ws)
    if not 0 <= shift < ws:
        raise ValueError(f"shift must be in [0, window size {ws}); got {shift}")
    return _shifted_window_mask(H, W, ws, shift, float(fill), bool(mask_padding), device, dtype)


@trace_safe_cache(maxsize=32)
def relative_position_index(ws: int) -> torch.Tensor:
    """Swin relative position index [ws*ws, ws*ws] into a (2ws-1)² bias table (int64).

    index(p, q) = (dy + ws - 1)·(2ws - 1) + (dx + ws - 1) with (dy, dx) = pos(p) - pos(q).
    """
    _check_ws(ws)
    with torch.inference_mode(False):  # cached: see _shifted_window_mask
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + (ws - 1)  # [2, n, n]
        return rel[0] * (2 * ws - 1) + rel[1]
