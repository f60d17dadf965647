"""Vim-T / Vim-S MACs as the counter behind their published figures counts them (LocalMamba's
``local_vim.py`` ``flops()``: the scan as 5·L·D·N + 2·L·D per direction, one direction's conv1d /
x_proj / dt_proj), selected by the specs' ``meta.macs_convention``; the conventions' formulas."""
from __future__ import annotations

from pathlib import Path

import pytest

from archdsl.analysis.scan_macs import count_macs_with_scan, scan_direction_macs
from archdsl.analysis.summary import count_macs
from archdsl.cli.report import measure_row
from archdsl.compiler import build_model

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"


def test_scan_conventions():
    assert scan_direction_macs(197, 384, 16) == 9 * 197 * 384 * 16
    assert scan_direction_macs(197, 384, 16, "localmamba") == 5 * 197 * 384 * 16 + 2 * 197 * 384
    with pytest.raises(ValueError, match="unknown scan MACs convention 'fvcore'; expected one of: vmamba, localmamba"):
        scan_direction_macs(1, 1, 1, "fvcore")


def test_localmamba_convention_on_a_tiny_vim_by_hand():
    """dim 16 (D = 32 inner channels), one block, 32x32 images: L = 4 patches + the class token."""
    model = build_model(str(ZOO / "vim_t.yaml"), ["depth=1", "dim=16"], device="meta")
    L, D, N, R = 5, 32, 16, 12
    macs = count_macs(model, 32)
    assert count_macs_with_scan(model, 32) == (macs, 2 * 9 * L * D * N)
    # conv1d_b (kernel 4, padded by 3 on both sides, the first L of L + 3 outputs kept, as Mamba's),
    # ssm_b's x_proj and dt_proj
    backward = (L + 3) * D * 4 + L * D * (R + 2 * N) + L * R * D
    uncounted = ["*.conv1d_b", "*.ssm_b"]
    assert count_macs_with_scan(model, 32, "localmamba", uncounted) == (macs, 2 * (5 * L * D * N + 2 * L * D) - backward)


@pytest.mark.parametrize("name,gmacs_scan", [("vim_t", 1.4816), ("vim_s", 5.1420)])
def test_report_counts_vim_as_its_paper_figure(name, gmacs_scan):
    row = measure_row(str(ZOO / f"{name}.yaml"), [])
    assert row["macs_convention"] == "localmamba" and row["check"] == "ok"
    assert row["gmacs_scan"] == pytest.approx(gmacs_scan, abs=1e-4)
    assert abs(row["gmacs_scan"] - row["paper_gmacs"]) <= 0.02 * row["paper_gmacs"]
