"""Chunked gated linear attention (GLA / Mamba-2 SSD form), pure PyTorch.

The sequence is cut into chunks of c steps. With b_t the inclusive cumulative log-decay inside a
chunk (b_t <= 0, non-increasing):
  intra:  o_t += Σ_{s<=t} (Σ_k q_tk k_sk exp(b_tk - b_sk)) v_s     (quadratic, masked, exponents <= 0)
  inter:  o_t += (q_t ⊙ exp(b_t)) S_prev                            (exponents <= 0)
  state:  S = exp(b_last) ⊙ S_prev + (k ⊙ exp(b_last - b_s))ᵀ v      (exponents <= 0)
Only the state update loops over chunks. The intra term is computed, when the decay accumulated inside every chunk stays below a safe
bound (60 in fp32, 600 in fp64: no overflow), as one matmul (q ⊙ exp(b_t - b_0)) (k ⊙ exp(b_0 - b_s))ᵀ
("factorized"); otherwise exactly from the relative decays b_t - b_s masked before the exp
("exact": a [c, c] matrix per chunk for a per-head decay, a [c, c, K] tensor for a per-key decay,
whose chunk length is then capped by ``max_vector_chunk`` to bound memory). ``intra`` forces one
form ("auto" by default checks the bound once per call; while a tracer runs, where that check
would depend on the data, "auto" means "exact"). So no exp of a number above the bound
is ever taken, whatever the decay strength.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .._numerics import SAFE_LOG_RANGE
from ..tracing import is_tracing
from .common import check_args, compute_dtype


def _max_chunk_decay(g: torch.Tensor, c: int) -> float:
    """Largest total decay -Σ g over the steps 1..c-1 of any chunk of c steps ([B,H,T,K] g)."""
    T = g.shape[2]
    pad = (-T) % c
    gp = F.pad(g, (0, 0, 0, pad)) if pad else g
    tot = gp.reshape(*g.shape[:2], -1, c, g.shape[-1])[..., 1:, :].sum(-2)
    return float(-tot.min()) if tot.numel() else 0.0


# One function on purpose, like fla's chunk kernels: the chunked algorithm reads top to bottom beside its
# naive reference (naive.py); helpers would hide the per-chunk state that the tests compare.
def chunk_gated_linear_attention(
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
    max_vector_chunk: int = 16,
    intra: str = "auto",
    _info: Optional[dict] = None,
):
    """Gated linear attention, chunked; same contract as :func:`recurrent_gated_linear_attention_ref`.

    q, k: [B,H,T,K]; v: [B,H,T,V]; log_decay: [B,H,T] or [B,H,T,K] (<= 0) or None.
    Returns o [B,H,T,V] (and the final state [B,H,K,V] or [B,H,K,V+1] with ``normalize``).
    """
    check_args(q, k, v, log_decay, normalize, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dt = compute_dtype(q.dtype)
    B, H, T, K = q.shape
    V = v.shape[-1]
    qf, kf, vf = q.to(dt), k.to(dt), v.to(dt)
    if normalize:
        vf = torch.cat([vf, vf.new_ones(B, H, T, 1)], dim=-1)
    Vx = vf.shape[-1]
    if intra not in ("auto", "factorized", "exact"):
        raise ValueError(f"intra must be 'auto', 'factorized' or 'exact'; got {intra!r}")
    vector = log_decay is not None and log_decay.dim() == 4
    c = max(1, min(chunk_size, T if T else 1))
    factorized = False
    if intra == "auto" and (is_tracing() or q.device.type == "meta"):   # meta: shapes only, no data
        intra = "exact"
    if log_decay is not None:
        if intra == "auto":
            g4 = log_decay.detach().to(dt)
            factorized = _max_chunk_decay(g4 if vector else g4.unsqueeze(-1), c) <= SAFE_LOG_RANGE[dt]
        else:
            factorized = intra == "factorized"
        if vector and not factorized:
            c = max(1, min(c, max_vector_chunk))
    if _info is not None:
        _info.update(chunk=c, intra="none" if log_decay is None else ("factorized" if factorized else "exact"))
    pad = (-T) % c
    g = None
    if log_decay is not None:
        g = log_decay.to(dt)
        if pad:
            g = F.pad(g, (0, 0, 0, pad) if vector else (0, pad))
    if pad:
        qf, kf, vf = (F.pad(t, (0, 0, 0, pad)) for t in (qf, kf, vf))
    n = (T + pad) // c
    qc = qf.reshape(B, H, n, c, K)
    kc = kf.reshape(B, H, n, c, K)
    vc = vf.reshape(B, H, n, c, Vx)

    if g is None:
        att = (qc @ kc.transpose(-1, -2)).tril()
        q_in, k_st, decay_last = qc, kc, None
    else:
        # b: inclusive cumulative log-decay inside each chunk, [B,H,n,c,1] (per head) or [.., K]
        b = g.reshape(B, H, n, c, K if vector else 1).cumsum(-2)
        if factorized:  # exp(b_t - b_s) = exp(b_t - b_0) exp(b_0 - b_s): one matmul per chunk
            r0 = b - b[..., :1, :]  # <= 0 and >= -SAFE_LOG_RANGE (checked), so exp(-r0) is finite
            att = ((qc * torch.exp(r0)) @ (kc * torch.exp(-r0)).transpose(-1, -2)).tril()
        elif not vector:  # exact [c, c] relative decays, masked before the exp
            bs = b.squeeze(-1)
            causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
            rel = (bs.unsqueeze(-1) - bs.unsqueeze(-2)).masked_fill(~causal, float("-inf"))  # b_t - b_s
            att = (qc @ kc.transpose(-1, -2)) * torch.exp(rel)
        else:  # exact [c, c, K] relative decays, masked before the exp
            causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
            rel = b.unsqueeze(-2) - b.unsqueeze(-3)  # [B,H,n,t,s,K] = b_t - b_s
            rel = rel.masked_fill(~causal.unsqueeze(-1), float("-inf"))
            att = torch.einsum("bhntk,bhnsk,bhntsk->bhnts", qc, kc, torch.exp(rel))
        q_in = qc * torch.exp(b)
        k_st = kc * torch.exp(b[..., -1:, :] - b)
        decay_last = torch.exp(b[..., -1, :]).unsqueeze(-1)  # [B,H,n,K or 1,1]

    o = att @ vc  # intra-chunk, [B,H,n,c,Vx]
    kv = k_st.transpose(-1, -2) @ vc  # [B,H,n,K,Vx]: chunk's contribution to the state
    S = qf.new_zeros(B, H, K, Vx) if initial_state is None else initial_state.to(dt)
    prev = []
    for i in range(n):
        prev.append(S)
        S = (S if decay_last is None else decay_last[:, :, i] * S) + kv[:, :, i]
    if prev:
        o = o + q_in @ torch.stack(prev, dim=2)  # inter-chunk: S_prev [B,H,n,K,Vx]
    o = o.reshape(B, H, n * c, Vx)[:, :, :T]
    if normalize:
        o = o[..., :V] / (o[..., V:] + eps)
    o = o.to(q.dtype)
    return (o, S) if return_final_state else o
