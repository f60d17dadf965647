"""The token-module convention every block-level layer follows.

Tokens are ``x: [B, N, C]`` in row-major order over a grid ``hw = (H, W)`` with ``N == H * W``.
Every module inside a block has ``forward(x, hw) -> y`` with ``y: [B, N, C']``. Plain modules
that act on the channel dim alone (Linear, LayerNorm, activations) are wrapped by :class:`Tokenwise`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

HW = Tuple[int, int]


class TokenModule(nn.Module):
    """Base class (documentation only): ``forward(x: [B, N, C], hw: (H, W)) -> [B, N, C']``."""

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def fixed_size_reason(self) -> Optional[str]:
        """Why a trace of this module holds only for the traced grid size (Python control flow on
        the concrete H, W), so ``torch.export`` cannot keep height / width dynamic; None when the
        module follows any grid symbolically (``archdsl.export`` refuses a dynamic H / W otherwise)."""
        return None


class Tokenwise(TokenModule):
    """Wrap a module that maps ``[..., C] -> [..., C']`` so it takes ``(x, hw)``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        return self.module(x)


def check_tokens(x: torch.Tensor, hw: HW, dim: int | None = None, name: str = "layer") -> Tuple[int, int, int]:
    """Check ``x: [B, N, C]`` against the grid ``hw`` (and the layer's width); returns ``(B, N, C)``."""
    B, N, C = x.shape
    H, W = hw
    if N != H * W:
        raise ValueError(f"token count {N} does not match grid {H}x{W}")
    if dim is not None and C != dim:
        raise ValueError(f"{name} expects {dim} channels; got input {tuple(x.shape)}")
    return B, N, C


def tokens_to_map(x: torch.Tensor, hw: HW) -> torch.Tensor:
    """``[B, N, C] -> [B, C, H, W]``, a channels-last view of the tokens (no copy when ``x`` is
    contiguous): convolutions on it run oneDNN's channels-last kernels and return channels-last maps,
    which :func:`map_to_tokens` turns back into tokens without a copy."""
    B, N, C = x.shape
    H, W = hw
    if N != H * W:
        raise ValueError(f"token count {N} does not match grid {H}x{W}")
    return x.reshape(B, H, W, C).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> Tuple[torch.Tensor, HW]:
    """``[B, C, H, W] -> ([B, H*W, C], (H, W))``: contiguous tokens, a view when ``x`` is
    channels-last (one copy otherwise)."""
    B, C, H, W = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, H * W, C), (H, W)


def pad_to_multiple(img: torch.Tensor, p: int) -> torch.Tensor:
    """Zero-pad ``[B, C, H, W]`` bottom/right so that H and W are multiples of ``p`` (Swin, MLLA)."""
    H, W = img.shape[-2:]
    return F.pad(img, (0, (-W) % p, 0, (-H) % p)) if H % p or W % p else img
