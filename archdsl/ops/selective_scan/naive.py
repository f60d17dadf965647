"""Sequential reference of selective_scan: a plain loop over L (mamba_ssm's selective_scan_ref)."""
from __future__ import annotations

import torch

from .common import check_args, compute_dtype, expand_groups, finish, prepare_delta


def selective_scan_ref(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t ; y_t = C_t · h_t ; out = (y + D u) ⊙ silu(z).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or (batch, G, N, L);
    D, delta_bias: (dim,). Returns out (batch, dim, L) in u's dtype, and with
    ``return_last_state`` also h_L (batch, dim, N) in the compute dtype (fp32, or fp64).
    """
    check_args(u, delta, A, B, C, D, z, delta_bias)
    dt = compute_dtype(u.dtype)
    batch, dim, L = u.shape
    d = prepare_delta(delta, delta_bias, delta_softplus, dt)  # (b, d, L)
    uu = u.to(dt)
    A_ = A.to(dt)
    Bx = expand_groups(B.to(dt), dim)  # (b, d, N, L)
    Cx = expand_groups(C.to(dt), dim)
    h = uu.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(d[:, :, t, None] * A_)  # (b, d, N)
        h = dA * h + (d[:, :, t] * uu[:, :, t]).unsqueeze(-1) * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if L else uu.new_zeros(batch, dim, 0)
    out = finish(y, u, D, z, u.dtype)
    return (out, h) if return_last_state else out
