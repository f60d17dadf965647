"""softmax_attention: Swin-exact parameter count; window attention == global attention with the
equivalent N×N mask (built here by brute force from Swin's definition), with shift and padding."""
from __future__ import annotations

import math

import pytest
import torch

from archdsl.layers.mixers.softmax_attention import SoftmaxAttention
from archdsl.ops.testing import assert_close


def swin_param_count(C: int, heads: int, ws: int) -> int:
    return (3 * C * C + 3 * C) + (C * C + C) + (2 * ws - 1) ** 2 * heads


def test_swin_t_window_attention_parameter_count():
    for C, h in [(96, 3), (192, 6), (384, 12), (768, 24)]:
        m = SoftmaxAttention(C, h, window_size=7, shift=True)
        assert sum(p.numel() for p in m.parameters()) == swin_param_count(C, h, 7)
    assert sum(p.numel() for p in SoftmaxAttention(96, 3, window_size=7).parameters()) == 37755
    # global attention has no bias table
    assert sum(p.numel() for p in SoftmaxAttention(96, 3).parameters()) == 4 * 96 * 96 + 4 * 96


def brute_force_reference(m: SoftmaxAttention, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Global attention over the N real tokens with an explicit N×N bias: token p may attend q iff
    both fall in the same ws×ws window of the padded grid cyclically shifted by -s and in the same
    Swin shift region; the allowed pairs get the relative-position bias of their in-window offset."""
    B, N, C = x.shape
    ws, h = m.window_size, m.heads
    s = m.effective_shift((H, W))
    Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws

    def region(a: int, size: int) -> int:  # Swin's slices (0,-ws), (-ws,-s), (-s,None) in the rolled frame
        if s == 0:
            return 0
        return 0 if a < size - ws else (1 if a < size - s else 2)

    pos = []
    for i in range(H):
        for j in range(W):
            a, b = (i - s) % Hp, (j - s) % Wp  # position after torch.roll(-s)
            pos.append((a // ws, b // ws, region(a, Hp), region(b, Wp), a % ws, b % ws))
    table = m.relative_position_bias_table
    bias = torch.full((h, N, N), float("-inf"), dtype=x.dtype)
    for p in range(N):
        for q in range(N):
            P, Q = pos[p], pos[q]
            if P[:4] == Q[:4]:
                if table is None:
                    bias[:, p, q] = 0.0
                else:
                    dy, dx = P[4] - Q[4] + ws - 1, P[5] - Q[5] + ws - 1
                    bias[:, p, q] = table[dy * (2 * ws - 1) + dx]
    qkv = m.qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d]
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // h) + bias, dim=-1)
    out = (att @ v).transpose(1, 2).reshape(B, N, C)
    return m.proj(out)


@pytest.mark.parametrize(
    "H,W,ws,shift",
    [(6, 6, 3, 0), (6, 6, 3, 1), (7, 5, 3, 1), (5, 7, 4, 2), (8, 6, 4, True), (3, 2, 4, True)],
    ids=lambda v: str(v),
)
def test_window_equals_global_with_equivalent_mask(H, W, ws, shift):
    m = SoftmaxAttention(8, 2, window_size=ws, shift=shift).double()
    with torch.no_grad():
        m.relative_position_bias_table.normal_()  # make the bias matter
    x = torch.randn(2, H * W, 8, dtype=torch.float64)
    assert_close(f"win{H}x{W}", brute_force_reference(m, x, H, W), m(x, (H, W)), atol=1e-10)


def test_one_window_covering_the_grid_is_global_attention():
    m = SoftmaxAttention(8, 2, window_size=8, rel_pos_bias=False).double()
    g = SoftmaxAttention(8, 2).double()
    g.load_state_dict(m.state_dict())
    x = torch.randn(1, 6 * 5, 8, dtype=torch.float64)
    assert m.effective_shift((6, 5)) == 0
    assert_close("win=grid", g(x, (6, 5)), m(x, (6, 5)), atol=1e-10)


def test_shift_options():
    assert SoftmaxAttention(8, 2, window_size=7, shift=True).shift == 3
    assert SoftmaxAttention(8, 2, window_size=7, shift=2).shift == 2
    assert SoftmaxAttention(8, 2, window_size=7, shift=False).shift == 0
    with pytest.raises(ValueError, match=r"shift must be in \[0, window_size 7\); got 7"):
        SoftmaxAttention(8, 2, window_size=7, shift=7)
    with pytest.raises(ValueError, match="shift needs window_size"):
        SoftmaxAttention(8, 2, shift=True)
    with pytest.raises(ValueError, match="dim 96 is not divisible by heads 5"):
        SoftmaxAttention(96, 5)
    with pytest.raises(ValueError, match="unknown positional encoding 'ape'"):
        SoftmaxAttention(8, 2, positional=["ape"])


def test_extra_repr_names_the_kernel_and_windows():
    r = repr(SoftmaxAttention(8, 2, window_size=7, shift=True))
    assert "window=7, shift=3" in r and "kernel=sdpa" in r
    assert "global" in repr(SoftmaxAttention(8, 2))


def test_rope_and_lepe_variant_matches_manual_composition():
    m = SoftmaxAttention(8, 2, positional=["rope2d", "lepe"]).double()
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    q, k, v = m.qkv(x).chunk(3, dim=-1)
    q, k = m.rope(q, (3, 4)), m.rope(k, (3, 4))
    sp = lambda t: t.reshape(1, 12, 2, 4).transpose(1, 2)  # noqa: E731
    att = torch.softmax(sp(q) @ sp(k).transpose(-1, -2) / 2.0, dim=-1) @ sp(v)
    ref = m.proj(att.transpose(1, 2).reshape(1, 12, 8) + m.lepe(v, (3, 4)))
    assert_close("rope+lepe", ref, m(x, (3, 4)), atol=1e-12)


def test_attn_dropout_only_in_training():
    m = SoftmaxAttention(8, 2, attn_drop=0.5)
    x = torch.randn(1, 16, 8)
    m.eval()
    y1, y2 = m(x, (4, 4)), m(x, (4, 4))
    assert torch.equal(y1, y2)
    m.train()
    assert not torch.allclose(m(x, (4, 4)), y1)


@pytest.mark.parametrize("rel_pos_bias", [True, False])
def test_tables_first_built_under_inference_mode_still_train(rel_pos_bias):
    """Regression: the cached Swin mask / relative index, first made under inference_mode, must
    not break a later training step ("Inference tensors cannot be saved for backward")."""
    from archdsl.ops.softmax_attention import window

    window._shifted_window_mask.cache_clear()
    window.relative_position_index.cache_clear()
    m = SoftmaxAttention(8, 2, window_size=2, shift=True, rel_pos_bias=rel_pos_bias)
    x = torch.randn(1, 9, 8)
    with torch.inference_mode():
        ref = m(x, (3, 3))
    out = m(x, (3, 3))
    out.sum().backward()
    assert_close("train", ref, out.detach(), atol=1e-6)
    assert m.qkv.weight.grad is not None and m.qkv.weight.grad.abs().sum() > 0
