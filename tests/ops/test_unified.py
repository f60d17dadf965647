"""The unified formulation at the op level (docs/paper.md §1), float64.

Selective SSM = linear attention with C ↔ Q, B ↔ K, x ↔ V, an input gate Δ on V, a forget gate
exp(Δ A) and a shortcut D, without normalisation. Because exp(Δ A) differs per (channel, state),
the per-key-decay gated linear attention reproduces it with one head per channel (K = d_state,
V = 1 per head).
"""
import pytest
import torch

from archdsl.ops.gated_linear_attention import (
    chunk_gated_linear_attention,
    recurrent_gated_linear_attention_ref,
)
from archdsl.ops.linear_attention import causal_linear_attention
from archdsl.ops.selective_scan import selective_scan, selective_scan_ref
from archdsl.ops.testing import assert_close


def _ssm_inputs(b=2, dim=5, N=4, L=23):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(b, dim, L, generator=g, dtype=torch.float64)
    delta = torch.rand(b, dim, L, generator=g, dtype=torch.float64) * 0.5 + 0.05
    A = -torch.rand(dim, N, generator=g, dtype=torch.float64) * 2 - 0.1
    B = torch.randn(b, N, L, generator=g, dtype=torch.float64)
    C = torch.randn(b, N, L, generator=g, dtype=torch.float64)
    D = torch.randn(dim, generator=g, dtype=torch.float64)
    return u, delta, A, B, C, D


@pytest.mark.parametrize("gla", [chunk_gated_linear_attention, recurrent_gated_linear_attention_ref], ids=["chunk", "recurrent"])
def test_selective_scan_is_gated_linear_attention(gla):
    u, delta, A, B, C, D = _ssm_inputs()
    b, dim, L = u.shape
    N = A.shape[1]
    ref, last = selective_scan_ref(u, delta, A, B, C, D, return_last_state=True)
    q = C.transpose(1, 2).unsqueeze(1).expand(b, dim, L, N)  # C ↔ Q, shared by every channel-head
    k = B.transpose(1, 2).unsqueeze(1).expand(b, dim, L, N)  # B ↔ K
    v = (delta * u).unsqueeze(-1)  # input gate Δ on V = x: [b, dim, L, 1]
    log_decay = delta.unsqueeze(-1) * A[None, :, None, :]  # forget gate exp(Δ A): [b, dim, L, N]
    o, S = gla(q, k, v, log_decay, chunk_size=8, normalize=False, return_final_state=True)
    out = o.squeeze(-1) + D[:, None] * u  # shortcut D ⊙ x
    assert_close("ssm==gla", ref, out, atol=1e-10)
    assert_close("state", last, S.squeeze(-1), atol=1e-10)
    fast = selective_scan(u, delta, A, B, C, D, backend="chunked", chunk_size=8)
    assert_close("fast", ref, fast, atol=1e-10)


def test_without_gates_selective_scan_is_causal_linear_attention():
    # Δ = 1 and A = 0 switch both gates off: y = per channel unnormalised causal linear attention.
    u, _, A, B, C, _ = _ssm_inputs()
    ones, zeros = torch.ones_like(u), torch.zeros_like(A)
    ref = selective_scan_ref(u, ones, zeros, B, C)
    q = C.transpose(1, 2).unsqueeze(1)  # one head, [b, 1, L, N]
    k = B.transpose(1, 2).unsqueeze(1)
    v = u.transpose(1, 2).unsqueeze(1)  # all channels as V of one head: [b, 1, L, dim]
    la = causal_linear_attention(q, k, v, normalize=False, chunk_size=8)
    assert_close("ssm==la", ref, la[:, 0].transpose(1, 2), atol=1e-10)


def test_empty_sequences():
    # L = 0 is legal everywhere: empty outputs, zero (or initial) states.
    for backend in ("ref", "chunked", "cpp"):
        if backend == "cpp":
            from archdsl.ops.selective_scan import cpp_available

            if not cpp_available():
                continue
        out, last = selective_scan(
            torch.randn(2, 3, 0), torch.rand(2, 3, 0), -torch.rand(3, 4), torch.randn(2, 4, 0),
            torch.randn(2, 4, 0), return_last_state=True, backend=backend,
        )
        assert out.shape == (2, 3, 0) and torch.equal(last, torch.zeros(2, 3, 4))
    q, v, ld = torch.randn(1, 2, 0, 3), torch.randn(1, 2, 0, 4), -torch.rand(1, 2, 0)
    S0 = torch.randn(1, 2, 3, 4)
    for fn in (chunk_gated_linear_attention, recurrent_gated_linear_attention_ref):
        o, S = fn(q, q, v, ld, initial_state=S0, return_final_state=True)
        assert o.shape == (1, 2, 0, 4) and torch.equal(S, S0)
    assert causal_linear_attention(q, q, v).shape == (1, 2, 0, 4)
