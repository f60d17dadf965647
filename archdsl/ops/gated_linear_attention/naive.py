"""Recurrent reference of gated linear attention: a plain loop over T."""
from __future__ import annotations

from typing import Optional

import torch

from .common import check_args, compute_dtype


def recurrent_gated_linear_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: Optional[torch.Tensor],
    *,
    chunk_size: int = 64,
    normalize: bool = False,
    eps: float = 1e-6,
    initial_state: Optional[torch.Tensor] = None,
    return_final_state: bool = False,
):
    """S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t ; o_t = q_t S_t  (g = log_decay <= 0).

    With ``normalize``: z_t = exp(g_t) ⊙ z_{t-1} + k_t and o_t /= (q_t·z_t + eps); the state is then
    [B, H, K, V+1] with z as its last column. q, k: [B,H,T,K]; v: [B,H,T,V]; log_decay: [B,H,T]
    (one decay per head, SSD) or [B,H,T,K] (per key dim, GLA) or None (no decay).
    ``chunk_size`` is ignored (same signature as the chunked form). Returns o [B,H,T,V]
    (q's dtype) and, if asked, the final state (compute dtype).
    """
    check_args(q, k, v, log_decay, normalize, initial_state)
    dt = compute_dtype(q.dtype)
    B, H, T, K = q.shape
    V = v.shape[-1]
    qf, kf, vf = q.to(dt), k.to(dt), v.to(dt)
    if normalize:
        vf = torch.cat([vf, vf.new_ones(B, H, T, 1)], dim=-1)
    S = qf.new_zeros(B, H, K, vf.shape[-1]) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        if log_decay is not None:
            g = log_decay[:, :, t].to(dt)
            a = torch.exp(g).unsqueeze(-1)  # [B,H,1] or [B,H,K,1]
            S = (a.unsqueeze(-1) if g.dim() == 2 else a) * S
        S = S + kf[:, :, t, :, None] * vf[:, :, t, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", qf[:, :, t], S))
    o = torch.stack(outs, dim=2) if T else qf.new_zeros(B, H, 0, vf.shape[-1])
    if normalize:
        o = o[..., :V] / (o[..., V:] + eps)
    o = o.to(q.dtype)
    return (o, S) if return_final_state else o
