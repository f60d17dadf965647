"""Positional encodings (RoPE-2D/1-D against a direct complex rotation, APE interpolation, CPE,
LePE state-dict names) and the Gate."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archdsl.layers.gates import Gate
from archdsl.layers.posenc import APE, CPE, LePE, RoPE1d, RoPE2d
from archdsl.ops.testing import assert_close


def complex_rope2d(x: torch.Tensor, H: int, W: int, base: float = 10000.0) -> torch.Tensor:
    """x [B, H*W, C]: pair m of token (i, j) times exp(i·angle), angle = i·θ_m or j·θ_{m-C/4}."""
    B, N, C = x.shape
    out = torch.empty_like(x)
    for t in range(N):
        i, j = divmod(t, W)
        for m in range(C // 2):
            kmax = C // 4
            ang = (i if m < kmax else j) * base ** (-(m % kmax) / kmax)
            z = torch.complex(x[:, t, 2 * m], x[:, t, 2 * m + 1]) * complex(math.cos(ang), math.sin(ang))
            out[:, t, 2 * m], out[:, t, 2 * m + 1] = z.real, z.imag
    return out


def test_rope2d_is_the_complex_rotation_and_is_size_agnostic():
    r = RoPE2d(8)
    for H, W in [(3, 4), (5, 2), (3, 4)]:
        x = torch.randn(2, H * W, 8, dtype=torch.float64)
        assert_close(f"rope2d-{H}x{W}", complex_rope2d(x, H, W), r(x, (H, W)), atol=1e-12)
    assert r.state_dict() == {} and list(r.buffers()) == []


def test_rope2d_preserves_norm_and_relative_property():
    r = RoPE2d(8)
    q, k = torch.randn(1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 8, dtype=torch.float64)
    # <R(p) q, R(p') k> depends only on p - p': compare positions (1,1)-(0,0) and (2,3)-(1,2) on a 4x4 grid
    big_q, big_k = q.expand(1, 16, 8), k.expand(1, 16, 8)
    rq, rk = r(big_q, (4, 4)), r(big_k, (4, 4))
    d1 = (rq[0, 1 * 4 + 1] * rk[0, 0]).sum()
    d2 = (rq[0, 2 * 4 + 3] * rk[0, 1 * 4 + 2]).sum()
    assert abs(d1 - d2) < 1e-12
    assert_close("norm", big_q.norm(dim=-1), rq.norm(dim=-1), atol=1e-12)


def test_rope1d_matches_complex_rotation():
    r = RoPE1d(6)
    x = torch.randn(1, 5, 6, dtype=torch.float64)
    xc = torch.view_as_complex(x.reshape(1, 5, 3, 2))
    ang = torch.arange(5, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(3, dtype=torch.float64) / 3)
    ref = torch.view_as_real(xc * torch.polar(torch.ones_like(ang), ang)).reshape(1, 5, 6)
    assert_close("rope1d", ref, r(x, (1, 5)), atol=1e-12)


def test_rope_errors():
    with pytest.raises(ValueError, match="rope2d needs a channel dim divisible by 4; got 6"):
        RoPE2d(6)
    with pytest.raises(ValueError, match="rope1d needs an even channel dim; got 5"):
        RoPE1d(5)


def test_ape_base_grid_and_bicubic_resize():
    a = APE(4, grid=[3, 5])
    assert a.pos.shape == (1, 15, 4)
    x = torch.randn(2, 15, 4)
    assert_close("ape-base", x + a.pos, a(x, (3, 5)), atol=0)
    table = F.interpolate(a.pos.reshape(1, 3, 5, 4).permute(0, 3, 1, 2), size=(6, 4), mode="bicubic",
                          align_corners=False).flatten(2).transpose(1, 2)
    y = torch.randn(1, 24, 4)
    assert_close("ape-resize", y + table, a(y, (6, 4)), atol=1e-6)
    assert APE(4, base_size=7).grid == (7, 7) and APE(4).grid == (14, 14)
    assert sum(p.numel() for p in APE(96, base_size=56).parameters()) == 56 * 56 * 96
    with pytest.raises(ValueError, match=r"ape grid must be two positive integers \[h0, w0\]; got \[3\]"):
        APE(4, grid=[3])


def test_cpe_and_lepe():
    c = CPE(4)
    assert sorted(c.state_dict()) == ["bias", "weight"] and c.weight.shape == (4, 1, 3, 3)
    x = torch.randn(2, 12, 4)
    conv = F.conv2d(x.transpose(1, 2).reshape(2, 4, 3, 4), c.weight, c.bias, padding=1, groups=4)
    assert_close("cpe", x + conv.flatten(2).transpose(1, 2), c(x, (3, 4)), atol=1e-6)
    le = LePE(4)
    le.load_state_dict(c.state_dict())
    assert_close("lepe", conv.flatten(2).transpose(1, 2), le(x, (3, 4)), atol=1e-6)
    assert sum(p.numel() for p in LePE(64).parameters()) == 9 * 64 + 64


@pytest.mark.parametrize("act,fn", [("sigmoid", torch.sigmoid), ("silu", F.silu)])
def test_gate(act, fn):
    g = Gate(8, act=act)
    x = torch.randn(2, 6, 8)
    assert_close(act, fn(g.proj(x)), g(x, (2, 3)), atol=0)
    assert sum(p.numel() for p in g.parameters()) == 8 * 8 + 8
    assert sum(p.numel() for p in Gate(8, act=act, bias=False).parameters()) == 64
    g0 = Gate(8, act=act, proj=False)
    assert list(g0.parameters()) == [] and torch.equal(g0(x, (2, 3)), fn(x)) and torch.equal(g0(x), fn(x))
    with pytest.raises(ValueError, match="unknown gate activation 'tanh'; expected one of: sigmoid, silu"):
        Gate(8, act="tanh")
