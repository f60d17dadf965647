import pytest
import torch

from archdsl.ops.scan_order import (
    BIDIRECTIONAL,
    CROSS_SCAN_4,
    cross_merge,
    cross_scan,
    inverse_indices,
    scan_indices,
)


def test_scan_indices_small_grid():
    # 2x3 grid, row-major positions [[0,1,2],[3,4,5]]
    assert scan_indices(2, 3, "row").tolist() == [0, 1, 2, 3, 4, 5]
    assert scan_indices(2, 3, "col").tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_indices(2, 3, "row_reverse").tolist() == [5, 4, 3, 2, 1, 0]
    assert scan_indices(2, 3, "col_reverse").tolist() == [5, 2, 4, 1, 3, 0]


@pytest.mark.parametrize("order", ["row", "col", "row_reverse", "col_reverse"])
def test_inverse(order):
    idx, inv = scan_indices(3, 5, order), inverse_indices(3, 5, order)
    x = torch.randn(2, 15)
    assert torch.equal(x[:, idx][:, inv], x)


@pytest.mark.parametrize("H,W", [(3, 5), (4, 2), (1, 6)], ids=["H3-W5", "H4-W2", "H1-W6"])
@pytest.mark.parametrize("dirs", [CROSS_SCAN_4, BIDIRECTIONAL, ("col",)], ids=["cross4", "bidir", "col"])
def test_merge_of_scan_is_k_times_x(H, W, dirs):
    x = torch.randn(2, 3, H, W)
    ys = cross_scan(x, dirs)
    assert ys.shape == (2, len(dirs), 3, H * W)
    merged = cross_merge(ys, H, W, dirs)
    assert torch.allclose(merged, len(dirs) * x.reshape(2, 3, H * W))


def test_cross_scan_content_matches_vmamba_layout():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    ys = cross_scan(x)[0, :, 0]
    assert ys.tolist() == [
        [0, 1, 2, 3, 4, 5],  # row-major
        [0, 3, 1, 4, 2, 5],  # column-major (x transposed)
        [5, 4, 3, 2, 1, 0],  # row-major reversed
        [5, 2, 4, 1, 3, 0],  # column-major reversed
    ]


def test_cross_merge_sums_mapped_outputs():
    # A causal per-direction op: cumulative sum along each scan; merge maps each back.
    x = torch.randn(1, 2, 3, 4)
    ys = cross_scan(x, BIDIRECTIONAL).cumsum(-1)
    merged = cross_merge(ys, 3, 4, BIDIRECTIONAL)
    flat = x.reshape(1, 2, 12)
    expected = flat.cumsum(-1) + flat.flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(merged, expected, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="unknown scan order 'diag'; expected one of: row, col, row_reverse, col_reverse"):
        scan_indices(2, 2, "diag")
    with pytest.raises(ValueError, match=r"expected y \[B, 4, C, 6\]"):
        cross_merge(torch.randn(1, 2, 3, 6), 2, 3)
