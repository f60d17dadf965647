"""Chunked selective scan in pure PyTorch (autograd through plain ops).

Inside a chunk of T steps, with the inclusive cumulative log-decay cs_t = Σ_{s<=t} Δ_s A (<= 0):
    h_t = exp(cs_t) ⊙ h_0 + exp(P_t) ⊙ Σ_{s<=t} exp(-P_s) ⊙ Δ_s B_s u_s,   P_t = cs_t - cs_0
(two cumsums and exps, no loop over t); the state h_T is carried to the next chunk. exp(-P_s)
grows with the decay accumulated inside a chunk, so the chunk length is chosen per call: the
largest T <= chunk_size (halving) whose worst in-chunk |Σ |Δ| max|A|| stays below a safe
bound (60 in fp32, 600 in fp64). T == 1 is the plain recurrence. The chosen T is reported.

While a tracer runs (torch.export / torch.compile / ONNX, :func:`archdsl.ops.tracing.is_tracing`)
the chunk length cannot depend on the data, so T is fixed (``TRACE_CHUNK``) and the in-chunk sum
is taken exactly from the relative decays, masked before the exp (exponents <= 0 for a decaying
scan: no overflow for any decay strength), at T times the memory of a chunk; chunks are then
grouped by sizes that do not involve the batch, so a dynamic batch stays symbolic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._numerics import SAFE_LOG_RANGE
from ..tracing import is_tracing
from .common import check_args, compute_dtype, finish, prepare_delta


def choose_chunk(d: torch.Tensor, A: torch.Tensor, chunk_size: int) -> int:
    """Largest T (chunk_size halved) with max over chunks of Σ_chunk |Δ|·max|A| <= the safe bound."""
    L = d.shape[-1]
    bound = SAFE_LOG_RANGE[d.dtype]
    # |Δ|·max|A| bounds |Δ A| for any sign (a negative Δ or a positive A means growth, not decay)
    rate = d.detach().abs() * A.detach().abs().amax(dim=1).unsqueeze(-1)  # (b, d, L) >= 0
    T = max(1, min(chunk_size, L))
    while T > 1:
        pad = (-L) % T
        r = F.pad(rate, (0, pad)) if pad else rate
        if r.reshape(*r.shape[:-1], -1, T).sum(-1).max().item() <= bound:
            break
        T //= 2
    return T


TRACE_CHUNK = 16  # the chunk length while tracing (see the module docstring)


def _local_states_exact(cs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """States from a zero chunk start, h_t = Σ_{s<=t} exp(cs_t - cs_s) x_s, with the relative
    log-decays masked before the exp. cs, x: (b, G, dg, m, T, N) -> (b, G, dg, m, T, N)."""
    T = cs.shape[4]
    causal = torch.ones(T, T, dtype=torch.bool, device=cs.device).tril().unsqueeze(-1)  # (t, s, 1)
    rel = (cs.unsqueeze(5) - cs.unsqueeze(4)).masked_fill(~causal, float("-inf"))  # (.., t, s, N)
    return (torch.exp(rel) * x.unsqueeze(4)).sum(5)


def _chunk_starts_exact(decay: torch.Tensor, ends: torch.Tensor, h0: torch.Tensor):
    """The state entering each of m chunks, without a loop: s_0 = h0, s_{i+1} = exp(decay_i) s_i + ends_i,
    as s_i = Σ_{J<=i} exp(Σ_{J<K<=i} D_K) E_J over E = [h0, ends], D = [0, decay], the segment sums
    taken by a masked cumsum (no difference of long cumsums: no cancellation), masked before the
    exp. decay, ends: (b, G, dg, m, N); h0: (b, G, dg, N) -> (starts (b, G, dg, m, N), s_m)."""
    m = decay.shape[3]
    D = F.pad(decay, (0, 0, 1, 0))  # (b, G, dg, m+1, N)
    E = torch.cat([h0.unsqueeze(3), ends], dim=3)
    strict = torch.ones(m + 1, m + 1, dtype=torch.bool, device=D.device).tril(-1).unsqueeze(-1)  # (K, J, 1): K > J
    seg = D.unsqueeze(4).masked_fill(~strict, 0.0).cumsum(3)  # (.., i, J, N): Σ_{J<K<=i} D_K
    causal = torch.ones(m + 1, m + 1, dtype=torch.bool, device=D.device).tril().unsqueeze(-1)  # J <= i
    s = (torch.exp(seg.masked_fill(~causal, float("-inf"))) * E.unsqueeze(3)).sum(4)  # (b, G, dg, m+1, N)
    return s[:, :, :, :m], s[:, :, :, m]


# One function on purpose, like fla's chunk kernels: the chunked algorithm reads top to bottom beside its
# naive reference (naive.py); helpers would hide the per-chunk state that the tests compare.
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
    block_elements: int = 1 << 22,
    _info: dict | None = None,
):
    """Same contract as :func:`selective_scan_ref`; ``chunk_size`` is the largest chunk tried.

    Chunks are computed ``block_elements // (batch·dim·T·N)`` at a time (vectorised), which bounds
    the memory of the (batch, dim, chunks, T, N) intermediates; only the state hand-over between
    chunks is a Python loop over chunks.
    """
    check_args(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    dt = compute_dtype(u.dtype)
    batch, dim, L = u.shape
    N = A.shape[1]
    G = 1 if B.dim() == 3 else B.shape[1]
    dg = dim // G
    d = prepare_delta(delta, delta_bias, delta_softplus, dt)  # (b, d, L)
    exact = is_tracing() or d.device.type == "meta"   # no data to choose T from (meta: shapes only)
    if exact:
        T = max(1, min(TRACE_CHUNK, chunk_size, L))
    else:
        T = choose_chunk(d, A.to(dt), chunk_size) if L else 1
    if _info is not None:
        _info["chunk"] = T
    pad = (-L) % T
    n = (L + pad) // T
    # channels split as (G, dg) so B/C (one per group) broadcast over the dg channels of a group
    dp = F.pad(d, (0, pad)).reshape(batch, G, dg, n, T)
    up = F.pad(u.to(dt), (0, pad)).reshape(batch, G, dg, n, T)
    A_ = A.to(dt).reshape(1, G, dg, 1, 1, N)

    def per_group(t):  # (b, N, L) or (b, G, N, L) -> (b, G, 1, n, T, N)
        t = (t.unsqueeze(1) if t.dim() == 3 else t).to(dt)
        return F.pad(t, (0, pad)).reshape(batch, G, N, n, T).permute(0, 1, 3, 4, 2).unsqueeze(2)

    Bp, Cp = per_group(B), per_group(C)
    # chunks are processed in blocks of m chunks (bounded memory), vectorised inside a block
    per_chunk = dim * T * T * N if exact else batch * dim * T * N
    m = max(1, min(n, block_elements // max(per_chunk, 1)))
    if exact:  # the hand-over's (m+1)^2 segment sums stay within the block's memory
        m = min(m, T * T)
    h = d.new_zeros(batch, G, dg, N)
    ys = []
    for c0 in range(0, n, m):
        c1 = min(c0 + m, n)
        dc = dp[:, :, :, c0:c1]  # (b, G, dg, m, T)
        cs = (dc.unsqueeze(-1) * A_).cumsum(4)  # (b, G, dg, m, T, N) inclusive log-decay
        x = (dc * up[:, :, :, c0:c1]).unsqueeze(-1) * Bp[:, :, :, c0:c1]
        if exact:
            local = _local_states_exact(cs, x)
        else:  # states from a zero chunk start
            P = cs - cs[:, :, :, :, :1]
            local = torch.exp(P) * (torch.exp(-P) * x).cumsum(4)
        ecs = torch.exp(cs)
        if exact:  # the hand-over in a few ops: tracing a loop over chunks costs seconds per layer
            start, h = _chunk_starts_exact(cs[:, :, :, :, -1], local[:, :, :, :, -1], h)
        else:
            starts = []
            for i in range(c1 - c0):  # carry the state across the chunks of this block
                starts.append(h)
                h = ecs[:, :, :, i, -1] * h + local[:, :, :, i, -1]
            start = torch.stack(starts, dim=3)
        hs = local + ecs * start.unsqueeze(4)
        ys.append((hs * Cp[:, :, :, c0:c1]).sum(-1))  # (b, G, dg, m, T)
    y = torch.cat(ys, dim=3).reshape(batch, dim, n * T)[:, :, :L] if ys else d.new_zeros(batch, dim, 0)
    h = h.reshape(batch, dim, N)
    out = finish(y, u, D, z, u.dtype)
    return (out, h) if return_last_state else out
