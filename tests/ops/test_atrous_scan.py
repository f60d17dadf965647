"""ops.atrous_scan (EfficientVMamba's skip-sampled scan) against a loop-based gather / scatter."""
import pytest
import torch

from archdsl.ops.atrous_scan import ATROUS_DIRECTIONS, atrous_indices, atrous_merge, atrous_scan


def _naive_scan(x):
    """The official EfficientScan written as loops: pad to even sizes, then per direction (row phase a,
    column phase b, row- or column-major) the visited values one by one."""
    B, C, H, W = x.shape
    Hp, Wp = H + H % 2, W + W % 2
    pad = torch.zeros(B, C, Hp, Wp)
    pad[:, :, :H, :W] = x
    seqs = []
    for a, b, order in ATROUS_DIRECTIONS:
        rows, cols = range(a, Hp, 2), range(b, Wp, 2)
        cells = [(i, j) for i in rows for j in cols] if order == "row" else [(i, j) for j in cols for i in rows]
        seqs.append(torch.stack([pad[:, :, i, j] for i, j in cells], dim=-1))
    return torch.stack(seqs, dim=1)


def _naive_merge(y, H, W):
    """Each output written back where the naive scan read it; padding dropped."""
    B, _, C, _ = y.shape
    Hp, Wp = H + H % 2, W + W % 2
    out = torch.full((B, C, Hp, Wp), float("nan"))
    for k, (a, b, order) in enumerate(ATROUS_DIRECTIONS):
        rows, cols = range(a, Hp, 2), range(b, Wp, 2)
        cells = [(i, j) for i in rows for j in cols] if order == "row" else [(i, j) for j in cols for i in rows]
        for t, (i, j) in enumerate(cells):
            out[:, :, i, j] = y[:, k, :, t]
    return out[:, :, :H, :W].reshape(B, C, H * W)


@pytest.mark.parametrize("H,W", [(4, 6), (5, 3), (1, 1), (7, 7), (2, 9)])
def test_scan_and_merge_match_the_loops(H, W):
    torch.manual_seed(0)
    x = torch.randn(2, 3, H, W)
    ys = atrous_scan(x)
    assert ys.shape == (2, 4, 3, ((H + 1) // 2) * ((W + 1) // 2))
    assert torch.equal(ys, _naive_scan(x))
    y = torch.randn_like(ys)
    assert torch.equal(atrous_merge(y, H, W), _naive_merge(y, H, W))
    assert torch.equal(atrous_merge(ys, H, W), x.reshape(2, 3, H * W))  # merge inverts scan


def test_the_official_layout_on_a_4x4_grid():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)  # [[0..3], [4..7], [8..11], [12..15]]
    assert atrous_scan(x)[0, :, 0].tolist() == [
        [0, 2, 8, 10],   # rows 0::2, cols 0::2, row-major
        [4, 12, 6, 14],  # rows 1::2, cols 0::2, column-major
        [1, 3, 9, 11],   # rows 0::2, cols 1::2, row-major
        [5, 13, 7, 15],  # rows 1::2, cols 1::2, column-major
    ]
    assert atrous_indices(3, 3).tolist() == [[0, 2, 8, 10], [4, 12, 6, 14], [1, 3, 9, 11], [5, 13, 7, 15]]


def test_errors():
    with pytest.raises(ValueError, match=r"expected x \[B, C, H, W\]; got shape \(2, 3\)"):
        atrous_scan(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"expected y \[B, 4, C, 6\] for a 3x5 grid; got \(1, 4, 2, 5\)"):
        atrous_merge(torch.randn(1, 4, 2, 5), 3, 5)
    with pytest.raises(ValueError, match="grid must be at least 1x1; got 0x2"):
        atrous_indices(0, 2)
