"""linear_attention: the exact parameter cost of every switch (as documented in docs/mixers.md),
the non-causal forms against the quadratic reference, and the configuration errors."""
from __future__ import annotations

import math

import pytest
import torch

from archdsl.layers.mixers.linear_attention import LinearAttention
from archdsl.ops.linear_attention import linear_attention_ref
from archdsl.ops.testing import assert_close

C, H = 64, 2
C0 = math.ceil(C / 16)  # gate_rank "auto"


def nparams(**opts) -> int:
    return sum(p.numel() for p in LinearAttention(C, H, **opts).parameters())


BASE = 2 * C * C + 2 * C  # qk with bias (MLLA default: v = x, no out_proj)


@pytest.mark.parametrize("opts,extra", [
    ({}, 0),
    ({"qkv_bias": False}, -2 * C),
    ({"v_proj": True}, C * C + C),
    ({"out_proj": True}, C * C + C),
    ({"input_gate": True}, C * C0 + C0 * C + C),
    ({"input_gate": True, "gate_rank": 8}, 2 * C * 8 + C),
    ({"forget_gate": True}, C * (C // H) + 2 * C * C0 + C),  # A_log [C, d] + the Δ projection
    ({"forget_gate": True, "input_gate": True}, C * (C // H) + 2 * C * C0 + C),  # Δ shared by both gates
    ({"forget_gate": "scalar"}, C * H + H + H),
    ({"shortcut": True}, C),
    ({"normalize": False}, 0),
    ({"positional": ["lepe"]}, 9 * C + C),
    ({"positional": ["rope2d"]}, 0),
    ({"feature_map": "softmax"}, 0),
], ids=lambda v: str(v))
def test_parameter_cost_of_each_switch(opts, extra):
    assert nparams(**opts) == BASE + extra


def test_single_head_small_key_dim_cost():
    # "- Multi-head": one head with key dim d: W_Q, W_K of size C x d
    assert sum(p.numel() for p in LinearAttention(C, 1, key_dim=16).parameters()) == 2 * C * 16 + 2 * 16


def test_state_dict_names():
    m = LinearAttention(C, H, input_gate=True, forget_gate=True, shortcut=True, v_proj=True, out_proj=True,
                        positional=["rope2d", "lepe"])
    assert sorted(m.state_dict()) == sorted([
        "qk.weight", "qk.bias", "v.weight", "v.bias", "delta_down.weight", "delta_up.weight", "delta_up.bias",
        "A_log", "D", "lepe.weight", "lepe.bias", "proj.weight", "proj.bias"])


@pytest.mark.parametrize("fm", ["elu_plus_one", "relu", "identity", "softmax"])
@pytest.mark.parametrize("normalize", [True, False])
def test_noncausal_matches_quadratic_reference(fm, normalize):
    """out = φq·(φkᵀ(Δ⊙V))/N (/ φq·mean φk) + D⊙x, against the explicit N×N form."""
    m = LinearAttention(8, 2, feature_map=fm, normalize=normalize, input_gate=True, shortcut=True,
                        v_proj=True).double()
    x = torch.randn(2, 15, 8, dtype=torch.float64)
    q, k = m.features(x)
    v = m.v(x) * m.delta(x)
    sp = lambda t: t.reshape(2, 15, 2, -1).transpose(1, 2)  # noqa: E731
    ref = linear_attention_ref(sp(q), sp(k), sp(v), normalize=normalize, reduction="mean")
    ref = ref.transpose(1, 2).reshape(2, 15, 8) + m.D * x
    assert_close(f"{fm}-{normalize}", ref, m(x, (3, 5)), atol=1e-10)


def test_softmax_feature_map_is_per_head():
    m = LinearAttention(8, 2, feature_map="softmax")
    q, k = m.features(torch.randn(1, 4, 8))
    assert_close("sum1", torch.ones(1, 4, 2), q.reshape(1, 4, 2, 4).sum(-1), atol=1e-6)


def test_input_gate_is_softplus_of_low_rank_projection():
    m = LinearAttention(32, 2, input_gate=True, gate_rank=3)
    assert m.delta_down.weight.shape == (3, 32) and m.delta_down.bias is None
    assert m.delta_up.weight.shape == (32, 3)
    x = torch.randn(1, 4, 32)
    ref = torch.nn.functional.softplus(x @ m.delta_down.weight.T @ m.delta_up.weight.T + m.delta_up.bias)
    assert_close("delta", ref, m.delta(x), atol=1e-6)
    # Mamba's dt init: softplus(bias) log-uniform in [1e-3, 0.1]
    dt0 = torch.nn.functional.softplus(m.delta_up.bias)
    assert dt0.min() >= 1e-4 - 1e-9 and dt0.max() <= 0.1 + 1e-6


@pytest.mark.parametrize("kwargs,msg", [
    ({"dim": 96, "heads": 5}, "dim 96 is not divisible by heads 5"),
    ({"feature_map": "gelu"}, "unknown feature_map 'gelu'; expected one of: elu_plus_one, relu, identity, softmax"),
    ({"forget_gate": "yes"}, "forget_gate must be false, true or 'scalar'; got 'yes'"),
    ({"forget_gate": 1}, "forget_gate must be false, true or 'scalar'; got 1"),
    ({"scan_order": "zigzag", "forget_gate": True}, "unknown scan_order 'zigzag'; expected one of: row, bidirectional, cross4"),
    ({"scan_order": "cross4"}, "scan_order 'cross4' needs forget_gate"),
    ({"gate_rank": 0}, "gate_rank must be 'auto' or a positive integer; got 0"),
    ({"key_dim": 0}, "key_dim must be a positive integer; got 0"),
    ({"positional": ["rope3d"]}, "unknown positional encoding 'rope3d' for this mixer; expected any of: rope2d, lepe"),
    ({"positional": ["lepe", "lepe"]}, "positional lists an encoding twice"),
    ({"key_dim": 3, "heads": 1, "positional": ["rope2d"]}, "rope2d needs heads\\*key_dim divisible by 4; got 1\\*3"),
])
def test_configuration_errors(kwargs, msg):
    args = {"dim": 16, "heads": 2, **kwargs}
    with pytest.raises(ValueError, match=msg):
        LinearAttention(**args)


def test_extra_repr_reports_the_path():
    assert "path=non-causal linear_attention" in repr(LinearAttention(16, 2))
    m = LinearAttention(16, 2, forget_gate=True, scan_order="cross4")
    assert "path=causal selective_scan (cross4)" in repr(m)
    m(torch.randn(1, 4, 16), (2, 2))
    assert "last backend:" in repr(m)
    assert "chunk_gated_linear_attention" in repr(LinearAttention(16, 2, forget_gate="scalar"))


@pytest.mark.parametrize("opts,extra", [
    ({}, 0),
    ({"positional": ["rope2d", "lepe"]}, 9),  # LePE: k²·N·C
    ({"input_gate": True}, 2 * C0),  # Δ = x W1 W2: 2·N·C·C0
    ({"v_proj": True, "out_proj": True}, 2 * C),  # 2·N·C²
], ids=lambda v: str(v))
def test_macs_follow_the_paper_cost_model(opts, extra):
    """MACs counted by FlopCounterMode (matmul/conv) = the paper's 2NC² (Q/K) + 2NCd (linear
    attention, d = head dim) + the switch's own cost, in units of N·C."""
    from torch.utils.flop_counter import FlopCounterMode

    Hh, Ww = 6, 5
    N = Hh * Ww
    d = C // H
    m = LinearAttention(C, H, **opts)
    with FlopCounterMode(display=False) as fc:
        m(torch.randn(1, N, C), (Hh, Ww))
    assert fc.get_total_flops() // 2 == 2 * N * C * C + 2 * N * C * d + extra * N * C
