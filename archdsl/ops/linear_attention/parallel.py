"""Linear attention, fast forms: non-causal ``q (kᵀ v)`` and causal chunked prefix sums."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

_REDUCTIONS = ("sum", "mean")


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"expected q, k: [B,H,N,K] and v: [B,H,N,V]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape; got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v must be [B,H,N,V] with B,H,N of k {tuple(k.shape[:3])}; got {tuple(v.shape)}")


def linear_attention(
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
    """Non-causal linear attention over all N tokens. q, k: [B,H,N,K]; v: [B,H,N,V] -> [B,H,N,V].

    o = q (kᵀ v); with ``normalize`` o is divided by ``q'·Σ_n k' + eps`` where q', k' are
    ``q_norm``/``k_norm`` (default q, k: pass the un-rotated features when q, k carry RoPE, as
    MLLA does). ``reduction="mean"`` divides kᵀv and Σk by N (MLLA's scaling; it only changes the
    effect of eps and the unnormalised output). Cost O(N K V) instead of O(N² ·).
    """
    _check_qkv(q, k, v)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    n = k.shape[-2]
    scale = 1.0 / n if reduction == "mean" else 1.0
    kv = (k.transpose(-1, -2) @ v) * scale  # [B,H,K,V]: the scale on the small state, not on the output
    out = q @ kv  # [B,H,N,V]
    if normalize:
        qn = q if q_norm is None else q_norm
        kn = k if k_norm is None else k_norm
        ksum = kn.sum(dim=-2, keepdim=True) * scale  # [B,H,1,K]
        den = (qn * ksum).sum(-1, keepdim=True)  # [B,H,N,1]
        out = out / (den + eps)
    return out


def causal_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool = True,
    eps: float = 1e-6,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Causal linear attention (prefix sums over the sequence). q, k: [B,H,T,K]; v: [B,H,T,V].

    o_t = q_t Σ_{s<=t} k_sᵀ v_s (/ (q_t·Σ_{s<=t} k_s + eps)). Chunked: masked quadratic inside a
    chunk, exclusive cumulative state across chunks (no loop). Returns [B,H,T,V].
    """
    _check_qkv(q, k, v)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    B, H, T, K = q.shape
    V = v.shape[-1]
    c = max(1, min(chunk_size, T))
    pad = (-T) % c
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = (T + pad) // c
    qc = q.reshape(B, H, n, c, K)
    kc = k.reshape(B, H, n, c, K)
    vc = v.reshape(B, H, n, c, V)
    kv = kc.transpose(-1, -2) @ vc  # [B,H,n,K,V]
    S_prev = kv.cumsum(2) - kv  # state before each chunk
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    att = (qc @ kc.transpose(-1, -2)).masked_fill(~mask, 0.0)  # [B,H,n,c,c]
    out = att @ vc + qc @ S_prev
    if normalize:
        ks = kc.sum(-2)  # [B,H,n,K]
        z_prev = ks.cumsum(2) - ks
        den = att.sum(-1) + (qc * z_prev.unsqueeze(-2)).sum(-1)  # [B,H,n,c]
        out = out / (den.unsqueeze(-1) + eps)
    return out.reshape(B, H, n * c, V)[:, :, :T]
