import pytest
import torch

from archdsl.ops.softmax_attention import (
    attention,
    attention_ref,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from archdsl.ops.testing import assert_close


def test_attention_matches_reference_with_bias():
    q, k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 9, 8), torch.randn(2, 3, 9, 5)
    bias = torch.randn(3, 7, 9)
    assert_close("o", attention_ref(q, k, v, bias), attention(q, k, v, bias), atol=1e-5)
    assert_close("o_nobias", attention_ref(q, k, v), attention(q, k, v), atol=1e-5)
    assert_close("scale", attention_ref(q, k, v, scale=0.3), attention(q, k, v, scale=0.3), atol=1e-5)


def test_attention_gradcheck():
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, bias), (q, k, v), fast_mode=True)


@pytest.mark.parametrize("H,W,ws", [(8, 8, 4), (7, 9, 4), (5, 3, 7)], ids=["H8-W8-ws4", "H7-W9-ws4", "H5-W3-ws7"])
def test_partition_reverse_roundtrip(H, W, ws):
    x = torch.randn(2, H, W, 3)
    win = window_partition(x, ws)
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    assert win.shape == (2 * (Hp // ws) * (Wp // ws), ws * ws, 3)
    assert torch.equal(window_reverse(win, ws, H, W), x)


def test_partition_layout():
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    win = window_partition(x, 2)[..., 0]
    assert win.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_relative_position_index_swin():
    idx = relative_position_index(2)
    # positions (0,0),(0,1),(1,0),(1,1); index = (dy+1)*3 + (dx+1)
    assert idx.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert relative_position_index(7).max().item() == 13 * 13 - 1


def test_shifted_mask_regions():
    m = shifted_window_mask(4, 4, 2, 1, fill=-100.0)
    assert m.shape == (4, 4, 4)
    assert (m[0] == 0).all()  # top-left window lies in one region
    # last window (bottom-right) holds 4 different regions: only the diagonal is allowed
    assert torch.equal(m[3] == 0, torch.eye(4, dtype=torch.bool))
    assert (shifted_window_mask(4, 4, 2, 0) == 0).all()
    with pytest.raises(ValueError, match=r"shift must be in \[0, window size 2\); got 2"):
        shifted_window_mask(4, 4, 2, 2)


def _global_block_mask(H, W, ws, shift, mask_padding):
    """[Hp*Wp, Hp*Wp] mask over the rolled, padded grid: allowed iff same window and same region."""
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    ii, jj = torch.meshgrid(torch.arange(Hp), torch.arange(Wp), indexing="ij")
    win = (ii // ws) * (Wp // ws) + jj // ws

    def region(c, n):
        return torch.where(c < n - ws, 0, torch.where(c < n - shift, 1, 2)) if shift else torch.zeros_like(c)

    reg = region(ii, Hp) * 3 + region(jj, Wp)
    # original coordinate of each rolled position: rolled[p] = x[(p + shift) mod]
    pad = ((ii + shift) % Hp >= H) | ((jj + shift) % Wp >= W)
    win, reg, pad = win.flatten(), reg.flatten(), pad.flatten()
    ok = (win[:, None] == win[None, :]) & (reg[:, None] == reg[None, :])
    if mask_padding:
        ok = ok & ~pad[None, :]
    return torch.zeros(ok.shape, dtype=torch.float64).masked_fill(~ok, float("-inf"))


@pytest.mark.parametrize(
    "H,W,ws,shift,mask_padding",
    [(8, 8, 4, 2, False), (6, 10, 3, 1, False), (7, 5, 4, 2, False), (7, 5, 4, 2, True), (7, 5, 4, 0, True)],
    ids=["H8-W8-ws4-s2", "H6-W10-ws3-s1", "H7-W5-ws4-s2", "H7-W5-ws4-s2-maskpad", "H7-W5-ws4-s0-maskpad"],
)
def test_window_attention_equals_global_with_block_mask(H, W, ws, shift, mask_padding):
    B, C = 2, 4
    x = torch.randn(B, H, W, C, dtype=torch.float64)
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    xp = torch.nn.functional.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    xr = torch.roll(xp, shifts=(-shift, -shift), dims=(1, 2))
    # windowed path
    win = window_partition(xr, ws)  # [B*nW, n, C]
    mask = shifted_window_mask(H, W, ws, shift, fill=float("-inf"), mask_padding=mask_padding, dtype=torch.float64)
    nW = mask.shape[0]
    bias = mask.repeat(B, 1, 1)  # window order is (batch, window)
    o = attention(win, win, win, bias)
    o = window_reverse(o, ws, Hp, Wp)
    # global path over all Hp*Wp tokens with the equivalent block mask
    tokens = xr.reshape(B, Hp * Wp, C)
    g = attention_ref(tokens, tokens, tokens, _global_block_mask(H, W, ws, shift, mask_padding))
    assert nW == (Hp // ws) * (Wp // ws)

    def unroll_crop(t):  # back to the original grid; padded query rows are dropped
        return torch.roll(t.reshape(B, Hp, Wp, C), shifts=(shift, shift), dims=(1, 2))[:, :H, :W]

    assert_close("win==global", unroll_crop(g), unroll_crop(o), atol=1e-10)
