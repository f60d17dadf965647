import pytest
import torch
import torch.nn.functional as F

from archdsl.ops.gated_linear_attention import (
    chunk_gated_linear_attention,
    recurrent_gated_linear_attention_ref,
)
from archdsl.ops.linear_attention import causal_linear_attention_ref
from archdsl.ops.testing import assert_close


def _inputs(B, H, T, K, V, mode, dtype=torch.float32, seed=0, strength=1.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, K, generator=g, dtype=dtype)
    k = torch.randn(B, H, T, K, generator=g, dtype=dtype)
    v = torch.randn(B, H, T, V, generator=g, dtype=dtype)
    if mode == "scalar":
        ld = F.logsigmoid(torch.randn(B, H, T, generator=g, dtype=dtype) + 2.0) * strength
    elif mode == "vector":
        ld = F.logsigmoid(torch.randn(B, H, T, K, generator=g, dtype=dtype) + 2.0) * strength
    else:
        ld = None
    return q, k, v, ld


CASES = [(1, 1, 1, 2, 3), (2, 3, 63, 8, 5), (1, 2, 64, 4, 4), (2, 1, 100, 16, 7)]
IDS = [f"B{b}-H{h}-T{t}-K{k}-V{v}" for b, h, t, k, v in CASES]


@pytest.mark.parametrize("mode", ["scalar", "vector", "none"])
@pytest.mark.parametrize("B,H,T,K,V", CASES, ids=IDS)
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunk_matches_recurrent(mode, B, H, T, K, V, chunk_size):
    q, k, v, ld = _inputs(B, H, T, K, V, mode)
    init = torch.randn(B, H, K, V) * 0.5
    leaves = [q, k, v, init] + ([ld] if ld is not None else [])

    def run(fn):
        xs = [t.clone().requires_grad_() for t in leaves]
        o, S = fn(xs[0], xs[1], xs[2], xs[4] if ld is not None else None, chunk_size=chunk_size,
                  initial_state=xs[3], return_final_state=True)
        gen = torch.Generator().manual_seed(1)
        ((o * torch.randn(o.shape, generator=gen)).sum() + (S * torch.randn(S.shape, generator=gen)).sum()).backward()
        return o, S, [x.grad for x in xs]

    ro, rS, rg = run(recurrent_gated_linear_attention_ref)
    o, S, gr = run(chunk_gated_linear_attention)
    scale = 1.0 if mode != "none" else float(T)  # no decay: sums grow with T
    assert_close("o", ro, o, atol=1e-4 * scale)
    assert_close("final_state", rS, S, atol=1e-4 * scale)
    for name, a, b in zip(["dq", "dk", "dv", "dS0", "dlog_decay"], rg, gr):
        assert_close(name, a, b, atol=1e-4 * scale * max(1.0, a.abs().max().item() / 10))


@pytest.mark.parametrize("intra", ["factorized", "exact"])
@pytest.mark.parametrize("B,H,T,K,V", CASES[1:3], ids=IDS[1:3])
def test_vector_decay_intra_forms(intra, B, H, T, K, V):
    q, k, v, ld = _inputs(B, H, T, K, V, "vector")
    xs = [t.clone().requires_grad_() for t in (q, k, v, ld)]
    info = {}
    o, S = chunk_gated_linear_attention(*xs, chunk_size=32, intra=intra, return_final_state=True, _info=info)
    assert info["intra"] == intra and info["chunk"] == (32 if intra == "factorized" else 16)
    (o.sum() + S.sum()).backward()
    ys = [t.clone().requires_grad_() for t in (q, k, v, ld)]
    ro, rS = recurrent_gated_linear_attention_ref(*ys, return_final_state=True)
    (ro.sum() + rS.sum()).backward()
    assert_close("o", ro, o, atol=1e-4)
    assert_close("S", rS, S, atol=1e-4)
    for name, a, b in zip(["dq", "dk", "dv", "dlog_decay"], ys, xs):
        assert_close(name, a.grad, b.grad, atol=1e-3)


@pytest.mark.parametrize("mode", ["scalar", "vector"])
def test_auto_intra_choice_follows_decay_strength(mode):
    q, k, v, ld = _inputs(1, 1, 64, 4, 3, mode)
    info = {}
    chunk_gated_linear_attention(q, k, v, ld, chunk_size=64, _info=info)
    assert info == {"chunk": 64, "intra": "factorized"}
    chunk_gated_linear_attention(q, k, v, ld * 100, chunk_size=64, _info=info)
    assert info == {"chunk": 16 if mode == "vector" else 64, "intra": "exact"}
    chunk_gated_linear_attention(q, k, v, None, chunk_size=64, _info=info)
    assert info == {"chunk": 64, "intra": "none"}
    with pytest.raises(ValueError, match="intra must be 'auto', 'factorized' or 'exact'; got 'fast'"):
        chunk_gated_linear_attention(q, k, v, ld, intra="fast")


@pytest.mark.parametrize("mode", ["scalar", "vector"])
def test_normalized_matches_recurrent(mode):
    q, k, v, ld = _inputs(2, 2, 37, 4, 3, mode)
    q, k = F.elu(q) + 1, F.elu(k) + 1
    ro, rS = recurrent_gated_linear_attention_ref(q, k, v, ld, normalize=True, return_final_state=True)
    o, S = chunk_gated_linear_attention(q, k, v, ld, normalize=True, chunk_size=8, return_final_state=True)
    assert S.shape == (2, 2, 4, 4)
    assert_close("o", ro, o, atol=1e-4)
    assert_close("S", rS, S, atol=1e-4)


def test_no_decay_equals_causal_linear_attention():
    q, k, v, _ = _inputs(1, 2, 20, 3, 4, "none")
    q, k = F.elu(q) + 1, F.elu(k) + 1
    zero = torch.zeros(1, 2, 20)
    ref = causal_linear_attention_ref(q, k, v, normalize=True)
    assert_close("o", ref, chunk_gated_linear_attention(q, k, v, zero, normalize=True, chunk_size=8), atol=1e-4)
    assert_close("o_none", ref, chunk_gated_linear_attention(q, k, v, None, normalize=True, chunk_size=8), atol=1e-4)


@pytest.mark.parametrize("mode", ["scalar", "vector"])
def test_strong_decay_is_stable(mode):
    # Cumulative decay of thousands inside one chunk: exp of positive numbers would overflow.
    q, k, v, ld = _inputs(1, 1, 128, 4, 3, mode, strength=200.0)
    ref = recurrent_gated_linear_attention_ref(q, k, v, ld)
    out = chunk_gated_linear_attention(q, k, v, ld, chunk_size=64)
    assert_close("o", ref, out, atol=1e-4)


def test_state_carries_across_calls():
    q, k, v, ld = _inputs(1, 2, 40, 4, 3, "vector")
    full = chunk_gated_linear_attention(q, k, v, ld, chunk_size=16)
    o1, S1 = chunk_gated_linear_attention(q[:, :, :23], k[:, :, :23], v[:, :, :23], ld[:, :, :23], return_final_state=True)
    o2 = chunk_gated_linear_attention(q[:, :, 23:], k[:, :, 23:], v[:, :, 23:], ld[:, :, 23:], initial_state=S1)
    assert_close("split", full, torch.cat([o1, o2], dim=2), atol=1e-5)


@pytest.mark.parametrize("mode,intra", [("scalar", "factorized"), ("scalar", "exact"), ("vector", "factorized"), ("vector", "exact")])
def test_gradcheck_float64(mode, intra):
    q, k, v, ld = _inputs(1, 2, 7, 3, 2, mode, dtype=torch.float64)
    xs = [t.requires_grad_() for t in (q, k, v, ld)]
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: chunk_gated_linear_attention(
            a, b, c, d, chunk_size=3, normalize=True, return_final_state=True, intra=intra
        ),
        xs, fast_mode=True
    )


def test_errors():
    q, k, v, ld = _inputs(1, 1, 5, 2, 3, "scalar")
    with pytest.raises(ValueError, match=r"log_decay must be \[B, H, T\] \(per head\) or \[B, H, T, K\]"):
        chunk_gated_linear_attention(q, k, v, ld[..., :4])
    with pytest.raises(ValueError, match="log_decay must be <= 0"):
        chunk_gated_linear_attention(q, k, v, -ld)
    with pytest.raises(ValueError, match=r"initial_state must be \[B, H, K, V\] = \(1, 1, 2, 4\) \(V \+ 1 columns"):
        chunk_gated_linear_attention(q, k, v, ld, normalize=True, initial_state=torch.zeros(1, 1, 2, 3))
