"""Reference linear attention: the explicit quadratic form (plain float, no tricks)."""
from __future__ import annotations

from typing import Optional

import torch


def linear_attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    eps: float = 1e-6,
    reduction: str = "sum",
    q_norm: Optional[torch.Tensor] = None,
    k_norm: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Non-causal linear attention as ``(q kᵀ) v`` row-normalised. q, k: [B,H,N,K]; v: [B,H,N,V].

    o_i = Σ_j (q_i·k_j) v_j / (Σ_j q'_i·k'_j + eps) with q', k' = q_norm, k_norm (default q, k);
    with reduction="mean" both sums are divided by N. Returns [B,H,N,V].
    """
    n = k.shape[-2]
    scale = 1.0 / n if reduction == "mean" else 1.0
    scores = q @ k.transpose(-1, -2)  # [B,H,N,N]
    out = (scores @ v) * scale
    if normalize:
        qn = q if q_norm is None else q_norm
        kn = k if k_norm is None else k_norm
        den = (qn @ kn.transpose(-1, -2)).sum(-1, keepdim=True) * scale  # [B,H,N,1]
        out = out / (den + eps)
    return out


def causal_linear_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, normalize: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention, plain loop: S_t = S_{t-1} + k_tᵀ v_t, z_t = z_{t-1} + k_t,
    o_t = q_t S_t (/ (q_t·z_t + eps)). q, k: [B,H,T,K]; v: [B,H,T,V] -> [B,H,T,V]."""
    B, H, T, K = q.shape
    V = v.shape[-1]
    S = q.new_zeros(B, H, K, V)
    z = q.new_zeros(B, H, K)
    outs = []
    for t in range(T):
        S = S + k[:, :, t, :, None] * v[:, :, t, None, :]
        z = z + k[:, :, t]
        o = torch.einsum("bhk,bhkv->bhv", q[:, :, t], S)
        if normalize:
            o = o / ((q[:, :, t] * z).sum(-1, keepdim=True) + eps)
        outs.append(o)
    return torch.stack(outs, dim=2)
