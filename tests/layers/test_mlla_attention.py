"""MLLA's attention == a literal re-implementation of the official LinearAttention.forward
(github.com/LeapLabTHU/MLLA models/mlla.py, docs/paper.md §4), written here from the paper's
description, at several grids (square, non-square, batch 1) and in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archdsl.layers.mixers.linear_attention import LinearAttention
from archdsl.ops.testing import assert_close


def official_rope(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Official RoPE on x: [b, H, W, c] via complex multiplication (k_max = c/4, base 10000)."""
    c = x.shape[-1]
    k_max = c // 4
    theta = 1.0 / (10000 ** (torch.arange(k_max, dtype=torch.float64) / k_max))
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    angles = torch.cat([ii[..., None] * theta, jj[..., None] * theta], dim=-1)  # [H, W, c/2]
    rot = torch.polar(torch.ones_like(angles), angles)
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(rot * xc).flatten(-2).to(x.dtype)


def official_forward(m: LinearAttention, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The official forward, line by line (with h, w from the grid instead of sqrt(n))."""
    b, n, c = x.shape
    num_heads = m.heads
    head_dim = c // num_heads
    qk = F.linear(x, m.qk.weight, m.qk.bias).reshape(b, n, 2, c).permute(2, 0, 1, 3)
    q, k, v = qk[0], qk[1], x
    q = F.elu(q) + 1.0
    k = F.elu(k) + 1.0
    q_rope = official_rope(q.reshape(b, H, W, c), H, W).reshape(b, n, num_heads, head_dim).permute(0, 2, 1, 3)
    k_rope = official_rope(k.reshape(b, H, W, c), H, W).reshape(b, n, num_heads, head_dim).permute(0, 2, 1, 3)
    q = q.reshape(b, n, num_heads, head_dim).permute(0, 2, 1, 3)
    k = k.reshape(b, n, num_heads, head_dim).permute(0, 2, 1, 3)
    v = v.reshape(b, n, num_heads, head_dim).permute(0, 2, 1, 3)
    z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
    kv = (k_rope.transpose(-2, -1) * (n ** -0.5)) @ (v * (n ** -0.5))
    out = q_rope @ kv * z
    out = out.transpose(1, 2).reshape(b, n, c)
    v = v.transpose(1, 2).reshape(b, H, W, c).permute(0, 3, 1, 2)
    lepe = F.conv2d(v, m.lepe.weight, m.lepe.bias, padding=1, groups=c)
    return out + lepe.permute(0, 2, 3, 1).reshape(b, n, c)


def mlla(dim: int, heads: int) -> LinearAttention:
    return LinearAttention(dim, heads, positional=["rope2d", "lepe"])


@pytest.mark.parametrize("B,H,W,C,h", [(2, 7, 7, 16, 2), (1, 5, 7, 32, 4), (2, 6, 3, 8, 1)],
                         ids=lambda v: str(v))
def test_mlla_matches_official_forward_float64(B, H, W, C, h):
    m = mlla(C, h).double()
    x = torch.randn(B, H * W, C, dtype=torch.float64)
    assert_close("mlla-attn", official_forward(m, x, H, W), m(x, (H, W)), atol=1e-12)


def test_mlla_matches_official_forward_float32_stage1_size():
    m = mlla(64, 2)
    x = torch.randn(1, 14 * 14, 64)
    assert_close("mlla-attn32", official_forward(m, x, 14, 14), m(x, (14, 14)), atol=1e-5)


def test_mlla_parameter_names_and_counts_match_official():
    C = 64
    m = mlla(C, 2)
    sd = m.state_dict()
    assert sorted(sd) == ["lepe.bias", "lepe.weight", "qk.bias", "qk.weight"]  # rope has no buffer
    assert sd["qk.weight"].shape == (2 * C, C)
    assert sd["lepe.weight"].shape == (C, 1, 3, 3)
    n = {name: p.numel() for name, p in m.named_parameters()}
    assert n["qk.weight"] + n["qk.bias"] == 2 * C * C + 2 * C
    assert n["lepe.weight"] + n["lepe.bias"] == 9 * C + C
    assert sum(n.values()) == 2 * C * C + 2 * C + 10 * C


def test_mlla_resolution_change_recomputes_rope():
    m = mlla(16, 2).double()
    for H, W in [(4, 4), (6, 5), (4, 4)]:
        x = torch.randn(1, H * W, 16, dtype=torch.float64)
        assert_close(f"mlla-{H}x{W}", official_forward(m, x, H, W), m(x, (H, W)), atol=1e-12)
