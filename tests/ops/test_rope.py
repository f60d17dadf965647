import math

import pytest
import torch

from archdsl.ops.rope import apply_rope, rope1d_angles, rope1d_cos_sin, rope2d_angles, rope2d_cos_sin
from archdsl.ops.testing import assert_close


def _complex_ref(x, angles):
    """Direct complex rotation: view consecutive pairs as complex, multiply by polar(1, angle)."""
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    rot = torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(xc * rot).flatten(-2)


def _mlla_angles(H, W, C, base=10000.0):
    # Written from docs/paper.md §4, independently of the implementation: angle(i, j, k).
    k_max = C // 4
    out = torch.empty(H, W, C // 2, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            for k in range(k_max):
                theta = base ** (-k / k_max)
                out[i, j, k] = i * theta
                out[i, j, k_max + k] = j * theta
    return out.reshape(H * W, C // 2)


@pytest.mark.parametrize("H,W,C", [(3, 5, 8), (4, 4, 16), (1, 7, 4)], ids=["H3-W5-C8", "H4-W4-C16", "H1-W7-C4"])
def test_rope2d_matches_complex_reference(H, W, C):
    angles = rope2d_angles(H, W, C)
    assert_close("angles", _mlla_angles(H, W, C), angles, atol=1e-12)
    x = torch.randn(2, 3, H * W, C)
    cos, sin = rope2d_cos_sin(H, W, C)
    out = apply_rope(x, cos, sin)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close("rope2d", _complex_ref(x, angles), out, atol=1e-5)


def test_rope1d_matches_complex_reference():
    N, C = 9, 6
    angles = rope1d_angles(N, C, base=100.0)
    expected = torch.tensor([[n * 100.0 ** (-k / 3) for k in range(3)] for n in range(N)], dtype=torch.float64)
    assert_close("angles", expected, angles, atol=1e-12)
    x = torch.randn(4, N, C, dtype=torch.float64)
    cos, sin = rope1d_cos_sin(N, C, 100.0, dtype=torch.float64)
    assert_close("rope1d", _complex_ref(x, angles), apply_rope(x, cos, sin), atol=1e-12)


def test_rope_preserves_norm_and_relative_property():
    # <R(a)q, R(b)k> depends only on a-b for 1-D RoPE.
    C = 8
    q, k = torch.randn(C, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
    cos, sin = rope1d_cos_sin(12, C, dtype=torch.float64)
    rq = apply_rope(q.expand(12, C).unsqueeze(0), cos, sin)[0]
    rk = apply_rope(k.expand(12, C).unsqueeze(0), cos, sin)[0]
    assert math.isclose((rq[5] @ rk[2]).item(), (rq[9] @ rk[6]).item(), rel_tol=1e-9)
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(12))


def test_cache_recomputes_for_new_size_and_reuses_same_size():
    a = rope2d_cos_sin(3, 4, 8)
    b = rope2d_cos_sin(3, 4, 8)
    c = rope2d_cos_sin(4, 3, 8)
    assert a[0] is b[0]
    assert c[0].shape == (12, 4) and not torch.equal(a[0], c[0])
    d = rope2d_cos_sin(3, 4, 8, dtype=torch.float64)
    assert d[0].dtype == torch.float64


def test_rope_errors():
    with pytest.raises(ValueError, match="divisible by 4; got 6"):
        rope2d_angles(2, 2, 6)
    with pytest.raises(ValueError, match="even channel dim; got 5"):
        rope1d_angles(3, 5)
    cos, sin = rope2d_cos_sin(2, 2, 8)
    with pytest.raises(ValueError, match="do not fit tokens"):
        apply_rope(torch.randn(1, 5, 8), cos, sin)
