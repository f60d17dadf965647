"""selective_ssm: Mamba's initialisation (docs/paper.md §6), parameter counts per scan order, the
multi-direction scan against a per-direction loop, and that a model-level init keeps it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archdsl.compiler import init_weights
from archdsl.layers.mixers.selective_ssm import SelectiveSSM
from archdsl.ops.scan_order import scan_indices
from archdsl.ops.selective_scan import selective_scan_ref
from archdsl.ops.testing import assert_close


def check_mamba_init(m: SelectiveSSM) -> None:
    S, R = m.d_state, m.dt_rank
    assert_close("A_log", torch.arange(1, S + 1, dtype=torch.float32).log().expand_as(m.A_log), m.A_log, atol=1e-7)
    assert torch.equal(m.D, torch.ones_like(m.D))
    dts = [m.dt_proj] if isinstance(m.dt_proj, torch.nn.Linear) else list(m.dt_proj)
    for p in dts:
        dt = F.softplus(p.bias)
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        assert p.weight.abs().max() <= R ** -0.5 and p.weight.abs().max() > 0.5 * R ** -0.5


def test_mamba_initialisation_and_dt_rank():
    m = SelectiveSSM(48, d_state=8)
    assert m.dt_rank == math.ceil(48 / 16) == 3
    assert SelectiveSSM(48, d_model=24).dt_rank == 2  # d_model (the block width) drives "auto"
    assert SelectiveSSM(48, dt_rank=5).dt_rank == 5
    check_mamba_init(m)
    init_weights(torch.nn.Sequential(m))  # the compiler's init must leave Mamba's alone
    check_mamba_init(m)


@pytest.mark.parametrize("order,K", [("row", 1), ("bidirectional", 2), ("cross4", 4)])
def test_parameter_count_per_direction(order, K):
    C, S, R = 32, 16, 2
    m = SelectiveSSM(C, heads=4, d_state=S, scan_order=order)
    per_dir = C * (R + 2 * S) + (R * C + C) + C * S + C
    assert sum(p.numel() for p in m.parameters()) == K * per_dir
    if K == 1:  # mamba_simple names
        assert sorted(m.state_dict()) == ["A_log", "D", "dt_proj.bias", "dt_proj.weight", "x_proj.weight"]


def test_heads_is_validated_and_ignored():
    a, b = SelectiveSSM(16, heads=1), SelectiveSSM(16, heads=8)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    with pytest.raises(ValueError, match="heads must be a positive integer; got 0"):
        SelectiveSSM(16, heads=0)
    with pytest.raises(ValueError, match="unknown scan_order 'spiral'; expected one of: row, bidirectional, cross4"):
        SelectiveSSM(16, scan_order="spiral")
    assert "heads=ignored" in repr(a)


@pytest.mark.parametrize("order", ["bidirectional", "cross4"])
def test_multi_direction_is_sum_of_per_direction_scans(order):
    m = SelectiveSSM(8, d_state=4, scan_order=order).double()
    H, W = 3, 4
    x = torch.randn(2, H * W, 8, dtype=torch.float64)
    total = torch.zeros_like(x)
    for k, d in enumerate(m.directions):
        idx = scan_indices(H, W, d)
        xs = x[:, idx]  # [B, L, C] in scan order
        dbl = xs @ m.x_proj[k].weight.T
        dt, Bm, Cm = dbl.split([m.dt_rank, 4, 4], dim=-1)
        sl = slice(k * 8, (k + 1) * 8)
        y = selective_scan_ref(xs.transpose(1, 2), (dt @ m.dt_proj[k].weight.T).transpose(1, 2),
                               -torch.exp(m.A_log[sl]), Bm.transpose(1, 2), Cm.transpose(1, 2), m.D[sl],
                               delta_bias=m.dt_proj[k].bias, delta_softplus=True)  # [B, C, L]
        back = torch.empty_like(x)
        back[:, idx] = y.transpose(1, 2)
        total = total + back
    assert_close(order, total, m(x, (H, W)), atol=1e-10)
