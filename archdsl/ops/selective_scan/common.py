"""Argument checking and the shared pre/post-processing of every selective_scan backend."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .._numerics import compute_dtype as compute_dtype  # re-exported for the backends


def check_args(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Validate shapes (docs/paper.md §6); return the number of groups of B/C (1 for 3-D B/C)."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L); got shape {tuple(u.shape)}")
    batch, dim, L = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have the shape of u {tuple(u.shape)}; got {tuple(delta.shape)}")
    if A.is_complex():
        raise TypeError("complex A is not supported; A must be a real (dim, d_state) tensor")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, d_state); got shape {tuple(A.shape)}")
    N = A.shape[1]
    groups = 1
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            ok = t.shape == (batch, N, L)
            g = 1
        elif t.dim() == 4:
            g = t.shape[1]
            ok = t.shape == (batch, g, N, L) and g >= 1 and dim % g == 0
        else:
            ok, g = False, 1
        if not ok:
            raise ValueError(
                f"{name} must be (batch={batch}, d_state={N}, L={L}) or (batch, groups, d_state, L) "
                f"with groups dividing dim={dim}; got shape {tuple(t.shape)}"
            )
        groups = g if name == "B" else groups
        if name == "C" and g != groups:
            raise ValueError(f"B and C must have the same number of groups; got {groups} and {g}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"{name} must be (dim={dim},); got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have the shape of u {tuple(u.shape)}; got {tuple(z.shape)}")
    return groups


def prepare_delta(delta: torch.Tensor, delta_bias: Optional[torch.Tensor], softplus: bool, dtype) -> torch.Tensor:
    """delta (+ delta_bias) (-> softplus), in the compute dtype."""
    d = delta.to(dtype)
    if delta_bias is not None:
        d = d + delta_bias.to(dtype).unsqueeze(-1)
    if softplus:
        d = F.softplus(d)
    return d


def expand_groups(t: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C (batch, N, L) / (batch, G, N, L) -> per channel (batch, dim, N, L) (a view if G == 1)."""
    if t.dim() == 3:
        return t.unsqueeze(1).expand(t.shape[0], dim, *t.shape[1:])
    g = t.shape[1]
    return t.repeat_interleave(dim // g, dim=1)


def finish(
    y: torch.Tensor,
    u: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """out = y + D u, out = out ⊙ silu(z), cast to ``out_dtype``. y, u: (batch, dim, L)."""
    out = y
    if D is not None:
        out = out + D.to(y.dtype).unsqueeze(-1) * u.to(y.dtype)
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(out_dtype)
