"""Scan paths over an H×W grid beyond the raster orders: continuous zig-zag scans (PlainMamba) and
windowed local scans (LocalVMamba), and the multi-direction scan / merge that pads paths of unequal
length.

A path is idx [L'] of row-major grid positions (p = i·W + j); the value ``H·W`` marks a zero pad
token (a windowed scan on a grid its window does not divide reads the zero-padded grid, as
LocalMamba's ``local_scan``). Names:
  row, col, row_reverse, col_reverse   the raster orders of :mod:`archdsl.ops.scan_order`
  zigzag_row        boustrophedon by rows from (0, 0): row 0 left to right, row 1 right to left, ...
  zigzag_col        the same by columns from (0, 0): column 0 top-down, column 1 bottom-up, ...
  zigzag_row_reverse, zigzag_col_reverse   those paths reversed (PlainMamba's four scans)
  window{K}         K×K windows in row-major order, row-major inside each window (grid zero-padded
                    bottom/right to multiples of K); window{K}_reverse the path reversed
``scan_moves`` gives the move that reached each step of a continuous path (0 start, 1 right, 2 left,
3 up, 4 down: PlainMamba's direction-aware tokens).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .scan_order import SCAN_ORDERS

__all__ = ["PATH_NAMES", "check_path_name", "scan_path", "path_positions", "path_span", "scan_moves", "multi_scan",
           "multi_merge", "MOVES"]

PATH_NAMES = SCAN_ORDERS + ("zigzag_row", "zigzag_row_reverse", "zigzag_col", "zigzag_col_reverse",
                            "window{K}", "window{K}_reverse")
MOVES = ("start", "right", "left", "up", "down")
_WINDOW = re.compile(r"window([1-9][0-9]*)(_reverse)?")


def check_path_name(name: str) -> str:
    """``name`` if it names a scan path; ValueError listing the names otherwise."""
    if name in SCAN_ORDERS or name in PATH_NAMES[len(SCAN_ORDERS):-2] or _WINDOW.fullmatch(str(name)):
        return name
    raise ValueError(f"unknown scan path {name!r}; expected one of: {', '.join(PATH_NAMES)} (K a positive integer)")


def _zigzag(H: int, W: int) -> np.ndarray:
    grid = np.arange(H * W).reshape(H, W)
    grid[1::2] = grid[1::2, ::-1]  # odd rows right to left
    return grid.flatten()


def _window(H: int, W: int, k: int) -> np.ndarray:
    hp, wp = -(-H // k) * k, -(-W // k) * k
    padded = np.full((hp, wp), H * W)
    padded[:H, :W] = np.arange(H * W).reshape(H, W)
    return padded.reshape(hp // k, k, wp // k, k).transpose(0, 2, 1, 3).flatten()


@lru_cache(maxsize=256)
def _path(H: int, W: int, name: str) -> np.ndarray:
    """The path as a NumPy array: built from Python ints only, so a tracer (torch.export) sees constants."""
    check_path_name(name)
    reverse = name.endswith("_reverse")
    base = name[: -len("_reverse")] if reverse else name
    if base == "row":
        idx = np.arange(H * W)
    elif base == "col":
        idx = np.arange(H * W).reshape(H, W).T.flatten()
    elif base == "zigzag_row":
        idx = _zigzag(H, W)
    elif base == "zigzag_col":
        q = _zigzag(W, H)  # the zig-zag of the transposed grid (q = j * H + i), as positions of this one
        idx = (q % H) * W + q // H
    else:
        idx = _window(H, W, int(_WINDOW.fullmatch(base).group(1)))
    idx = idx[::-1] if reverse else idx
    idx.setflags(write=False)
    return idx


def scan_path(H: int, W: int, name: str, device=None) -> torch.Tensor:
    """Grid positions visited by path ``name``: int64 [L'] (L' >= H*W; ``H*W`` = a zero pad token)."""
    if H < 1 or W < 1:
        raise ValueError(f"grid must be at least 1x1; got {H}x{W}")
    return torch.tensor(_path(int(H), int(W), name).tolist(), dtype=torch.long, device=device)


@lru_cache(maxsize=256)
def _positions(H: int, W: int, name: str) -> tuple:
    idx = _path(H, W, name)
    real = idx < H * W
    pos = np.empty(H * W, dtype=np.int64)
    pos[idx[real]] = np.arange(idx.size)[real]
    return tuple(pos.tolist())


def path_positions(H: int, W: int, name: str, device=None) -> torch.Tensor:
    """pos [H*W]: the step of path ``name`` at which each grid position is read (the inverse)."""
    return torch.tensor(_positions(int(H), int(W), name), dtype=torch.long, device=device)


def scan_moves(H: int, W: int, name: str, device=None) -> torch.Tensor:
    """moves [H*W] (int64 in 0..4, see :data:`MOVES`): the move from step t-1 to step t (0 at t = 0).
    ValueError for a path that reads pad tokens or jumps (a step to a cell that is not a neighbour)."""
    return torch.tensor(_moves(int(H), int(W), name), dtype=torch.long, device=device)


@lru_cache(maxsize=256)
def _moves(H: int, W: int, name: str) -> tuple:
    idx = _path(H, W, name)
    if idx.size != H * W:
        raise ValueError(f"scan path {name!r} reads pad tokens on a {H}x{W} grid: it has no moves")
    step = {(0, 1): 1, (0, -1): 2, (-1, 0): 3, (1, 0): 4}
    moves = [0]
    for a, b in zip((idx[1:] // W - idx[:-1] // W).tolist(), (idx[1:] % W - idx[:-1] % W).tolist()):
        if (a, b) not in step:
            raise ValueError(f"scan path {name!r} is not continuous on a {H}x{W} grid (a step moves by "
                             f"{(a, b)}); direction tokens need a continuous path such as a zigzag_* one")
        moves.append(step[(a, b)])
    return tuple(moves)


@lru_cache(maxsize=256)
def _span(H: int, W: int, name: str) -> Tuple[int, int]:
    real = np.flatnonzero(_path(H, W, name) < H * W)
    return int(real[0]), int(real[-1]) + 1


def path_span(H: int, W: int, name: str) -> Tuple[int, int]:
    """``(start, stop)``: the steps of path ``name`` from its first to its last grid position (the
    pad tokens before ``start`` and from ``stop`` on are the path's ends)."""
    return _span(int(H), int(W), name)


@lru_cache(maxsize=256)
def _reads(H: int, W: int, names: Tuple[str, ...], trim: bool) -> Tuple[Tuple[int, ...], ...]:
    """Each path (without its ends' pad tokens if ``trim``), padded with ``H*W`` to the longest."""
    paths = [_path(H, W, n)[slice(*_span(H, W, n)) if trim else slice(None)] for n in names]
    lmax = max(p.size for p in paths)
    return tuple(tuple(p.tolist()) + (H * W,) * (lmax - p.size) for p in paths)


@lru_cache(maxsize=256)
def _merges(H: int, W: int, names: Tuple[str, ...], trim: bool) -> Tuple[Tuple[int, ...], ...]:
    """Each path's step at each grid position (the inverse of :func:`_reads`)."""
    return tuple(tuple(np.subtract(_positions(H, W, n), _span(H, W, n)[0] if trim else 0).tolist()) for n in names)


def multi_scan(x: torch.Tensor, names: Sequence[str], trim: bool = False) -> Tuple[torch.Tensor, List[int]]:
    """``x: [B, C, H, W] -> ([B, K, C, Lmax], lengths)``: the map read along each path, zero pad
    tokens where a path reads them, each sequence zero-padded at its end to the longest (Lmax).
    ``trim``: without the pad tokens at a path's ends (:func:`path_span`); a selective scan gives
    the same outputs at the grid positions (a zero token at the start leaves the zero state zero,
    the states after the last grid position are never read)."""
    if x.dim() != 4:
        raise ValueError(f"expected x [B, C, H, W]; got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    names = tuple(names)
    flat = F.pad(x.reshape(B, C, H * W), (0, 1))  # the pad token at index H*W
    idx = torch.tensor(_reads(H, W, names, bool(trim)), dtype=torch.long, device=x.device)  # [K, Lmax]
    lengths = [_span(H, W, n)[1] - _span(H, W, n)[0] if trim else _path(H, W, n).size for n in names]
    return flat[..., idx].transpose(1, 2), lengths  # one gather for every path: [B, C, K, Lmax] -> [B, K, C, Lmax]


def multi_merge(y: torch.Tensor, H: int, W: int, names: Sequence[str], trim: bool = False) -> torch.Tensor:
    """``y: [B, K, C, L'] -> [B, K, C, H*W]``: each direction's outputs back at their grid positions
    (row-major); pad-token outputs are dropped. Not summed (a merge may weigh each direction).
    ``trim``: ``y`` read by ``multi_scan(..., trim=True)``."""
    if y.dim() != 4 or y.shape[1] != len(names):
        raise ValueError(f"expected y [B, {len(names)}, C, L] for {len(names)} paths; got {tuple(y.shape)}")
    pos = torch.tensor(_merges(int(H), int(W), tuple(names), bool(trim)), dtype=torch.long, device=y.device)
    return torch.gather(y, 3, pos[None, :, None].expand(y.shape[0], -1, y.shape[2], -1))  # one gather: [B, K, C, H*W]
