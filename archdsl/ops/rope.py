"""Rotary position embeddings (RoPE), 1-D and the 2-D form of the official MLLA code.

2-D (MLLA, docs/paper.md §4): for a channel dim C, k_max = C/4 frequencies θ_k = base^(-k/k_max);
token (i, j) of an H×W grid gets the angles [i·θ_0..i·θ_{k_max-1}, j·θ_0..j·θ_{k_max-1}] (C/2
angles), and consecutive channel pairs (2m, 2m+1) of x are (real, imag) parts rotated by angle m.
1-D: k_max = C/2 frequencies θ_k = base^(-k/k_max), angle(n, k) = n·θ_k.

The (cos, sin) tables are cached (LRU) by (size, dim, base, device, dtype), so a model can run at
any input size and recompute only when the size changes. Treat cached tables as read-only. While a
tracer runs (torch.compile / export / ONNX) the cache is neither read nor written (ops/tracing.py).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .tracing import is_tracing, trace_safe_cache

__all__ = ["rope2d_angles", "rope1d_angles", "rope2d_cos_sin", "rope1d_cos_sin", "apply_rope", "rotate_pairs"]


def _frequencies(k_max: int, base: float) -> torch.Tensor:
    # θ_k = base^(-k/k_max) computed in float64 then rounded once.
    return 1.0 / (base ** (torch.arange(k_max, dtype=torch.float64) / k_max))


def rope2d_angles(H: int, W: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Angles of the MLLA 2-D RoPE: [H*W, dim/2] (float64, row-major tokens). dim % 4 == 0."""
    if H < 1 or W < 1:
        raise ValueError(f"grid must be at least 1x1; got {H}x{W}")
    if dim < 4 or dim % 4 != 0:
        raise ValueError(f"2-D RoPE needs a channel dim divisible by 4; got {dim}")
    k_max = dim // 4
    theta = _frequencies(k_max, base)
    ii, jj = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    angles = torch.cat([ii.unsqueeze(-1) * theta, jj.unsqueeze(-1) * theta], dim=-1)  # [H,W,dim/2]
    return angles.reshape(H * W, dim // 2)


def rope1d_angles(N: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Angles of the 1-D RoPE: [N, dim/2] (float64). dim must be even."""
    if N < 1:
        raise ValueError(f"sequence length must be >= 1; got {N}")
    if dim < 2 or dim % 2 != 0:
        raise ValueError(f"1-D RoPE needs an even channel dim; got {dim}")
    theta = _frequencies(dim // 2, base)
    return torch.arange(N, dtype=torch.float64).unsqueeze(-1) * theta


def _cos_sin(angles_fn, *args, device, dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of ``angles_fn(*args)`` (float64 angles) on ``device``/``dtype``. The tables are cached across calls, so
    they are never made as inference tensors: one first made under ``torch.inference_mode()`` could not
    be saved for backward by a later training step."""
    with torch.inference_mode(False):
        angles = angles_fn(*args)
        return angles.cos().to(device=device, dtype=dtype), angles.sin().to(device=device, dtype=dtype)


@trace_safe_cache(maxsize=32)
def rope2d_cos_sin(
    H: int,
    W: int,
    dim: int,
    base: float = 10000.0,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cached ``(cos, sin)`` of :func:`rope2d_angles`, each [H*W, dim/2] on ``device``/``dtype``."""
    return _cos_sin(rope2d_angles, H, W, dim, base, device=device, dtype=dtype)


@trace_safe_cache(maxsize=32)
def rope1d_cos_sin(
    N: int,
    dim: int,
    base: float = 10000.0,
    device: Optional[torch.device] = None,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cached ``(cos, sin)`` of :func:`rope1d_angles`, each [N, dim/2]."""
    return _cos_sin(rope1d_angles, N, dim, base, device=device, dtype=dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of tokens ``x: [..., N, dim]`` by angles (cos, sin: [N, dim/2]).

    (x_{2m}, x_{2m+1}) is read as the complex number x_{2m} + i·x_{2m+1} and multiplied by
    cos + i·sin. Computed in the dtype of ``cos``; returns ``x.dtype``, shape unchanged. Eager fp32/fp64
    uses one complex multiply (fast on CPU); half precision and tracing (torch.export, ONNX, compile)
    the equal real form ``(xr cos - xi sin, xr sin + xi cos)``.
    """
    if x.dim() < 2:
        raise ValueError(f"expected tokens [..., N, dim]; got shape {tuple(x.shape)}")
    N, dim = x.shape[-2], x.shape[-1]
    if cos.shape != (N, dim // 2) or sin.shape != cos.shape or dim % 2:
        raise ValueError(
            f"RoPE tables of shape {tuple(cos.shape)} do not fit tokens [..., {N}, {dim}] "
            f"(expected [{N}, {dim // 2}] and an even dim)"
        )
    xp = x.to(cos.dtype).reshape(*x.shape[:-1], dim // 2, 2)
    if cos.dtype in (torch.float32, torch.float64) and not is_tracing():
        # One complex multiply: several times faster on CPU than the real/imag arithmetic below.
        rot = torch.complex(cos, sin)
        out = torch.view_as_real(torch.view_as_complex(xp.contiguous()) * rot)
    else:  # real arithmetic: no complex type for half precision, nor in exported graphs (ONNX)
        out = rotate_pairs(xp, cos, sin)
    return out.flatten(-2).to(x.dtype)


def rotate_pairs(xp: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The real form of the rotation: pairs ``xp [..., N, dim/2, 2]`` (real, imag) rotated by
    ``(cos, sin) [N, dim/2]`` -> ``[..., N, dim/2, 2]`` = (xr cos - xi sin, xr sin + xi cos)."""
    xr, xi = xp[..., 0], xp[..., 1]
    return torch.stack((xr * cos - xi * sin, xr * sin + xi * cos), dim=-1)
