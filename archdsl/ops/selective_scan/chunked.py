"""Chunked selective scan in pure PyTorch (autograd through plain ops).

Inside a chunk of T steps, with the inclusive cumulative log-decay cs_t = Σ_{s<=t} Δ_s A (<= 0):
    h_t = exp(cs_t) ⊙ h_0 + exp(P_t) ⊙ Σ_{s<=t} exp(-P_s) ⊙ Δ_s B_s u_s,   P_t = cs_t - cs_0
(two cumsums and exps, no loop over t); the state h_T is carried to the next chunk. exp(-P_s)
grows with the decay accumulated inside a chunk, so the chunk length is chosen per call: the
largest T <= chunk_size (halving) whose worst in-chunk decay |Σ Δ min(A)| stays below a safe
bound (60 in fp32, 600 in fp64). T == 1 is the plain recurrence. The chosen T is reported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import check_args, compute_dtype, expand_groups, finish, prepare_delta

SAFE_LOG_RANGE = {torch.float32: 60.0, torch.float64: 600.0}


def choose_chunk(d: torch.Tensor, A: torch.Tensor, chunk_size: int) -> int:
    """Largest T (chunk_size halved) with max over chunks of Σ_chunk Δ·|min A| <= the safe bound."""
    L = d.shape[-1]
    bound = SAFE_LOG_RANGE[d.dtype]
    rate = d.detach() * (-A.detach().amin(dim=1).clamp_max(0)).unsqueeze(-1)  # (b, d, L) >= 0
    T = max(1, min(chunk_size, L))
    while T > 1:
        pad = (-L) % T
        r = F.pad(rate, (0, pad)) if pad else rate
        if r.reshape(*r.shape[:-1], -1, T).sum(-1).max().item() <= bound:
            break
        T //= 2
    return T


def selective_scan_chunked(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    *,
    chunk_size: int = 64,
    _info: dict | None = None,
):
    """Same contract as :func:`selective_scan_ref`; ``chunk_size`` is the largest chunk tried."""
    check_args(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dt = compute_dtype(u.dtype)
    batch, dim, L = u.shape
    N = A.shape[1]
    d = prepare_delta(delta, delta_bias, delta_softplus, dt)  # (b, d, L)
    uu = u.to(dt)
    A_ = A.to(dt)
    Bx = expand_groups(B.to(dt), dim)  # (b, d, N, L)
    Cx = expand_groups(C.to(dt), dim)
    T = choose_chunk(d, A_, chunk_size) if L else 1
    if _info is not None:
        _info["chunk"] = T
    h = uu.new_zeros(batch, dim, N)
    ys = []
    for s in range(0, L, T):
        e = min(s + T, L)
        dc = d[:, :, s:e]  # (b, d, t)
        log_a = dc.unsqueeze(-1) * A_.unsqueeze(1)  # (b, d, t, N)
        cs = log_a.cumsum(2)
        x = (dc * uu[:, :, s:e]).unsqueeze(-1) * Bx[..., s:e].transpose(-1, -2)  # (b, d, t, N)
        P = cs - cs[:, :, :1]  # decay since the chunk's first step (P_0 = 0)
        acc = (torch.exp(-P) * x).cumsum(2)
        hs = torch.exp(P) * acc + torch.exp(cs) * h.unsqueeze(2)  # (b, d, t, N): every h_t
        ys.append(torch.einsum("bdtn,bdnt->bdt", hs, Cx[..., s:e]))
        h = hs[:, :, -1]
    y = torch.cat(ys, dim=-1) if L else uu.new_zeros(batch, dim, 0)
    out = finish(y, u, D, z, u.dtype)
    return (out, h) if return_last_state else out
