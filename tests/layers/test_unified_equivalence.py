"""The unified formulation as executable facts (docs/paper.md §1).

selective SSM  ==  linear attention + input gate Δ + forget gate exp(ΔA) + shortcut D
                   − normalization − multi-head   (causal row order), on the same parameters.

Mapping of a ``selective_ssm`` (x_proj [R+2S, C] = rows (dt | B | C), dt_proj, A_log, D) onto a
``linear_attention(dim=C, heads=1, key_dim=S, feature_map="identity", normalize=False,
input_gate=True, gate_rank=R, forget_gate=True, shortcut=True, qkv_bias=False)``:
    qk.weight     = [x_proj.weight[R+S:] ; x_proj.weight[R:R+S]]   (Q ↔ C rows, K ↔ B rows)
    delta_down    = x_proj.weight[:R]        (W1: the dt rows)
    delta_up      = dt_proj                  (W2 and its bias)
    A_log, D      = A_log, D                 (the forget gate's A and the shortcut's D)
    V             = x itself (v_proj off)    (x ↔ V)
Both are also checked against the recurrence written out here as a plain loop.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archdsl.layers.mixers.linear_attention import LinearAttention
from archdsl.layers.mixers.selective_ssm import SelectiveSSM
from archdsl.ops.scan_order import scan_indices
from archdsl.ops.testing import assert_close


def la_from_ssm(ssm: SelectiveSSM) -> LinearAttention:
    C, S, R = ssm.dim, ssm.d_state, ssm.dt_rank
    la = LinearAttention(C, 1, feature_map="identity", normalize=False, key_dim=S, input_gate=True,
                         gate_rank=R, forget_gate=True, shortcut=True, qkv_bias=False).to(ssm.A_log.dtype)
    w = ssm.x_proj.weight
    with torch.no_grad():
        la.qk.weight.copy_(torch.cat([w[R + S:], w[R:R + S]]))
        la.delta_down.weight.copy_(w[:R])
        la.delta_up.weight.copy_(ssm.dt_proj.weight)
        la.delta_up.bias.copy_(ssm.dt_proj.bias)
        la.A_log.copy_(ssm.A_log)
        la.D.copy_(ssm.D)
    return la


def ssm_loop(ssm: SelectiveSSM, x: torch.Tensor) -> torch.Tensor:
    """h_i = exp(Δ_i A) ⊙ h_{i-1} + B_i (Δ_i ⊙ x_i); y_i = C_i h_i + D ⊙ x_i (row-major order)."""
    Bsz, N, C = x.shape
    R, S = ssm.dt_rank, ssm.d_state
    dbl = x @ ssm.x_proj.weight.T
    dt, Bm, Cm = dbl[..., :R], dbl[..., R:R + S], dbl[..., R + S:]
    delta = F.softplus(dt @ ssm.dt_proj.weight.T + ssm.dt_proj.bias)  # [B, N, C]
    A = -torch.exp(ssm.A_log)  # [C, S]
    h = x.new_zeros(Bsz, C, S)
    ys = []
    for i in range(N):
        h = torch.exp(delta[:, i, :, None] * A) * h + (delta[:, i] * x[:, i])[..., None] * Bm[:, i, None, :]
        ys.append((h * Cm[:, i, None, :]).sum(-1) + ssm.D * x[:, i])
    return torch.stack(ys, dim=1)


@pytest.mark.parametrize("B,H,W,C,S", [(2, 4, 5, 8, 4), (1, 3, 7, 16, 16), (1, 1, 1, 4, 2)],
                         ids=lambda v: str(v))
def test_selective_ssm_equals_gated_linear_attention_float64(B, H, W, C, S):
    ssm = SelectiveSSM(C, heads=1, d_state=S).double()
    with torch.no_grad():  # move A and D away from their init so every parameter matters
        ssm.A_log.add_(0.3 * torch.randn_like(ssm.A_log))
        ssm.D.add_(torch.randn_like(ssm.D))
    la = la_from_ssm(ssm)
    x = torch.randn(B, H * W, C, dtype=torch.float64)
    y_ssm, y_la = ssm(x, (H, W)), la(x, (H, W))
    assert_close("ssm==la", y_ssm, y_la, atol=1e-5)
    assert (y_ssm - y_la).abs().max() < 1e-10  # in fact equal to rounding
    assert_close("ssm==loop", ssm_loop(ssm, x), y_ssm, atol=1e-10)


def test_equivalence_also_holds_for_gradients():
    ssm = SelectiveSSM(8, d_state=4).double()
    la = la_from_ssm(ssm)
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    g_ssm = torch.autograd.grad(ssm(x, (3, 4)).square().sum(), [ssm.A_log, ssm.D, ssm.dt_proj.bias])
    g_la = torch.autograd.grad(la(x, (3, 4)).square().sum(), [la.A_log, la.D, la.delta_up.bias])
    for a, b in zip(g_ssm, g_la):
        assert_close("grad", a, b, atol=1e-9)


def test_switch_values_matter():
    """Turning any one of the mapped switches back breaks the equivalence (the test can fail)."""
    ssm = SelectiveSSM(8, d_state=4).double()
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    ref = ssm(x, (3, 4))
    for change in ({"normalize": True}, {"shortcut": False}, {"input_gate": False}):
        la = la_from_ssm(ssm)
        opts = dict(feature_map="identity", normalize=False, key_dim=4, input_gate=True, gate_rank=ssm.dt_rank,
                    forget_gate=True, shortcut=True, qkv_bias=False)
        opts.update(change)
        other = LinearAttention(8, 1, **opts).double()
        other.load_state_dict({k: v for k, v in la.state_dict().items() if k in other.state_dict()})
        assert (other(x, (3, 4)) - ref).abs().max() > 1e-3, change


# ----------------------------------------------------------------------------- LA forget gates
def la_forget_loop(m: LinearAttention, x: torch.Tensor, hw) -> torch.Tensor:
    """The causal forget-gate linear attention written as a loop, per scan direction, averaged."""
    Bsz, N, C = x.shape
    h, d = m.heads, m.key_dim
    q, k = m.features(x)
    qr, kr = (m.rope(q, hw), m.rope(k, hw)) if m.rope is not None else (q, k)
    v = m.v(x) if m.v is not None else x
    delta = m.delta(x)
    vg = v * delta if m.input_gate else v
    head_of = torch.arange(C) // (C // h)
    outs = []
    for order in m.directions:
        idx = scan_indices(hw[0], hw[1], order)
        S = x.new_zeros(Bsz, C, d)  # numerator state per value channel
        Z = x.new_zeros(Bsz, C, d)  # normaliser state
        y = x.new_zeros(Bsz, N, C)
        for p in idx.tolist():
            if m.forget_gate is True:
                a = torch.exp(delta[:, p, :, None].clamp_min(1e-4 if (m.normalize or not m.input_gate) else 0)
                              * -torch.exp(m.A_log))  # [B, C, d]
            else:
                dt = F.softplus(m.decay_proj(x[:, p]))  # [B, h]
                a = torch.exp(-torch.exp(m.A_log) * dt)[:, head_of, None]  # [B, C, 1]
            kh = kr[:, p].reshape(Bsz, h, d)[:, head_of]  # [B, C, d]
            S = a * S + kh * vg[:, p, :, None]
            num = (S * qr[:, p].reshape(Bsz, h, d)[:, head_of]).sum(-1)
            if m.normalize:
                Z = a * Z + k[:, p].reshape(Bsz, h, d)[:, head_of]
                num = num / ((Z * q[:, p].reshape(Bsz, h, d)[:, head_of]).sum(-1) + m.eps)
            y[:, p] = num
        outs.append(y)
    out = torch.stack(outs).mean(0)
    if m.lepe is not None:
        out = out + m.lepe(v, hw)
    if m.D is not None:
        out = out + m.D * x
    return m.proj(out) if m.proj is not None else out


@pytest.mark.parametrize("opts", [
    {"forget_gate": True},
    {"forget_gate": True, "input_gate": True, "positional": ["rope2d", "lepe"], "scan_order": "bidirectional"},
    {"forget_gate": True, "normalize": False, "scan_order": "cross4", "v_proj": True, "out_proj": True},
    {"forget_gate": True, "key_dim": 3, "shortcut": True, "feature_map": "relu"},
    {"forget_gate": "scalar"},
    {"forget_gate": "scalar", "input_gate": True, "positional": ["rope2d"], "scan_order": "cross4"},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_forget_gate_paths_match_recurrent_loop(opts):
    m = LinearAttention(8, 2, **opts).double()
    x = torch.randn(2, 4 * 3, 8, dtype=torch.float64)
    assert_close("fg-loop", la_forget_loop(m, x, (4, 3)), m(x, (4, 3)), atol=1e-9)


try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None

if given is not None:

    @settings(max_examples=15, deadline=None)
    @given(
        normalize=st.booleans(), input_gate=st.booleans(), forget_gate=st.sampled_from([True, "scalar"]),
        scan_order=st.sampled_from(["row", "bidirectional", "cross4"]), rope=st.booleans(),
        lepe=st.booleans(), shortcut=st.booleans(), v_proj=st.booleans(), heads=st.sampled_from([1, 2]),
        key_dim=st.sampled_from([None, 2, 4]), grid=st.sampled_from([(1, 1), (2, 3), (3, 2), (4, 1)]),
    )
    def test_any_switch_combination_matches_recurrent_loop(normalize, input_gate, forget_gate, scan_order, rope,
                                                            lepe, shortcut, v_proj, heads, key_dim, grid):
        assume(not rope or (heads * (key_dim or 8 // heads)) % 4 == 0)  # rope2d needs h·d divisible by 4
        positional = (["rope2d"] if rope else []) + (["lepe"] if lepe else [])
        m = LinearAttention(8, heads, normalize=normalize, input_gate=input_gate, forget_gate=forget_gate,
                            scan_order=scan_order, positional=positional, shortcut=shortcut, v_proj=v_proj,
                            key_dim=key_dim).double()
        x = torch.randn(1, grid[0] * grid[1], 8, dtype=torch.float64)
        assert_close("combo", la_forget_loop(m, x, grid), m(x, grid), atol=1e-9)
