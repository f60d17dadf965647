"""selective_ssm with ``scan_order: atrous`` (EfficientVMamba's ES2D) against a per-direction loop:
each direction scans its stride-2 sub-grid of the zero-padded map with its own parameters, and
each output goes back to the position it was read from."""
from __future__ import annotations

import pytest
import torch

from archdsl.analysis.scan_macs import count_macs_with_scan
from archdsl.layers.mixers.selective_ssm import SelectiveSSM
from archdsl.ops.selective_scan import selective_scan_ref
from archdsl.ops.testing import assert_close


def _positions(H, W, a, b, order):
    """Row-major positions on the padded (even) grid read by one direction, in scan order."""
    Hp, Wp = H + H % 2, W + W % 2
    rows, cols = range(a, Hp, 2), range(b, Wp, 2)
    cells = [(i, j) for i in rows for j in cols] if order == "row" else [(i, j) for j in cols for i in rows]
    return [i * Wp + j for i, j in cells], Hp, Wp


@pytest.mark.parametrize("H,W", [(4, 6), (5, 3)])
def test_atrous_is_four_sub_grid_scans(H, W):
    torch.manual_seed(0)
    C, S = 6, 3
    m = SelectiveSSM(C, d_state=S, scan_order="atrous").double()
    x = torch.randn(2, H * W, C, dtype=torch.float64)
    phases = [(0, 0, "row"), (1, 0, "col"), (0, 1, "row"), (1, 1, "col")]
    Hp, Wp = H + H % 2, W + W % 2
    pad = torch.zeros(2, Hp, Wp, C, dtype=torch.float64)
    pad[:, :H, :W] = x.reshape(2, H, W, C)
    pad = pad.reshape(2, Hp * Wp, C)
    out = torch.full_like(pad, float("nan"))
    for k, (a, b, order) in enumerate(phases):
        pos, _, _ = _positions(H, W, a, b, order)
        xs = pad[:, pos]  # [B, L', C]
        dt, Bm, Cm = (xs @ m.x_proj[k].weight.T).split([m.dt_rank, S, S], dim=-1)
        sl = slice(k * C, (k + 1) * C)
        y = selective_scan_ref(xs.transpose(1, 2), (dt @ m.dt_proj[k].weight.T).transpose(1, 2),
                               -torch.exp(m.A_log[sl]), Bm.transpose(1, 2), Cm.transpose(1, 2), m.D[sl],
                               delta_bias=m.dt_proj[k].bias, delta_softplus=True)
        out[:, pos] = y.transpose(1, 2)
    expected = out.reshape(2, Hp, Wp, C)[:, :H, :W].reshape(2, H * W, C)
    assert_close("atrous", expected, m(x, (H, W)), atol=1e-10)


def test_atrous_parameters_and_scan_macs():
    """Four parameter sets as cross4; the scan MACs count a quarter of the (even) grid per direction."""
    a, c = SelectiveSSM(16, d_state=4, scan_order="atrous"), SelectiveSSM(16, d_state=4, scan_order="cross4")
    assert [p.shape for p in a.parameters()] == [p.shape for p in c.parameters()]

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = a

        def forward(self, img):  # img [1, 16, 5, 7] -> tokens on a 5x7 grid
            return self.m(img.flatten(2).transpose(1, 2), (5, 7))

    _, scan = count_macs_with_scan(Wrap(), (16, 5, 7))
    assert a.scanned_tokens == 4 * 3 * 4  # the 6x8 padded grid, 12 tokens per direction
    assert scan == 9 * 48 * 16 * 4
