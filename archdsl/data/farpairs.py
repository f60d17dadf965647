"""``farpairs``: a bundled, procedurally generated task that separates global token mixers from
local ones (no download; the same seed gives the same images on every machine).

Each 32x32 RGB image holds two bands 8 pixels wide at opposite ends (left/right, or top/bottom in half
of the images), each sprinkled with dots (30 % of its pixels) of one of six colours, with a little
per-pixel colour jitter, on a dark noisy background. The label says whether the two bands have
**the same colour** (1) or not (0); the classes are balanced, so chance is 50 %.

Why it separates mixers: on a 4-pixel patch grid (8x8 tokens) the bands are token columns 0-1 and
6-7, so a model whose blocks see only a local window (two depthwise 3x3 convolutions: 5x5 tokens)
never has both bands in one token's view. With a global average pool and a linear head its score is
then a sum ``s(band 1) + s(band 2)``, and no such sum tells "same" from "different" among six
colours: its best is about 50 % + 50 % / 6 = 58 %. A mixer that moves information across the grid
(softmax / linear attention, a selective scan) can compare the two colours. Reading one band's colour
is easy; what the task measures is whether the architecture relates two distant groups of tokens
(the idea of the Long Range Arena's Pathfinder and of the MAD / Zoology recall tasks, at a size that
trains in minutes on a CPU). The guarantee needs the bands on token boundaries: train without random
crops (``train: {crop_padding: 0}``); flips keep it.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["PALETTE", "render_farpairs"]

# Six well-separated colours (RGB in [0, 1]).
PALETTE = np.array([[0.9, 0.15, 0.15], [0.15, 0.8, 0.2], [0.2, 0.3, 0.95],
                    [0.95, 0.85, 0.1], [0.85, 0.2, 0.85], [0.1, 0.85, 0.9]], dtype=np.float32)
COLOURS = 6
SIZE = 32
BAND = 8                 # width of each coloured band (pixels): 2 tokens of a 4-pixel patch grid


def render_farpairs(n: int, *, seed: int, colours: int = COLOURS, density: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``x[n, 3, 32, 32]`` in [0, 1] (float32) and labels ``y[n]`` (int64, 0/1, balanced)."""
    rng = np.random.default_rng(seed)
    x = np.clip(0.08 + 0.05 * rng.standard_normal((n, 3, SIZE, SIZE)), 0.0, 1.0).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(y)
    c1 = rng.integers(colours, size=n)
    c2 = np.where(y == 1, c1, (c1 + rng.integers(1, colours, size=n)) % colours)
    for side, col in ((slice(0, BAND), c1), (slice(SIZE - BAND, SIZE), c2)):
        dots = rng.random((n, SIZE, BAND)) < density                          # [n, 32, 8]
        paint = PALETTE[col][:, :, None, None] + 0.06 * rng.standard_normal((n, 3, SIZE, BAND))
        region = x[:, :, :, side]
        x[:, :, :, side] = np.where(dots[:, None], np.clip(paint, 0, 1), region)
    vertical = rng.random(n) < 0.5                                             # half the pairs top/bottom
    x[vertical] = x[vertical].transpose(0, 1, 3, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
