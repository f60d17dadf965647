"""specs/zoo: VMamba-T v2 (vmamba_tiny_s2l5) and EfficientVMamba-T — the official parameter counts,
counted by instantiating the official code on CPU (see each spec's ``meta.official``), and tiny
versions that run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archdsl.analysis.summary import count_params
from archdsl.compiler import build_model
from archdsl.language import load_spec

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"
TINY = ["stages.embed_dim=8", "stages.depths=[1,1,1,1]", "num_classes=5", "image_size=32"]


@pytest.mark.parametrize("name,repo,params", [("vmamba_t_v2", "MzeroMiko/VMamba", 30_705_832),
                                               ("efficientvmamba_t", "TerryPei/EfficientVMamba", 6_493_660)])
def test_exact_official_count(name, repo, params):
    official = load_spec(str(ZOO / f"{name}.yaml")).meta["official"]
    assert official["repo"] == repo
    assert count_params(build_model(str(ZOO / f"{name}.yaml"), device="meta")) == official["params"] == params


def test_vmamba_t_v2_blocks_are_ss2d_without_gate_plus_mlp():
    """v05_noz: in_proj C -> 2C only (no z half), conv without bias, d_state 1, and an MLP per block."""
    model = build_model(str(ZOO / "vmamba_t_v2.yaml"), device="meta")
    block = model.stages[0].blocks[0]
    assert block.in_proj.weight.shape == (192, 96)
    assert block.conv2d.bias is None
    assert block.ssm.A_log.shape == (4 * 192, 1)
    assert block.mlp.fc1.weight.shape == (384, 96)


def test_vmamba_t_v2_tiny_runs():
    model = build_model(str(ZOO / "vmamba_t_v2.yaml"), TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,overrides,params", [
    # VMamba's vmamba_tiny_s1l8 (vmambav2v_tiny_224.yaml), counted on CPU as s2l5
    ("vmamba_t_v2", ["block.ssm_ratio=1", "stages.depths=[2,2,8,2]"], 30_249_064),
    # EfficientVMamba's vssm_efficient_base.yaml; the official training log prints 33.717 M
    ("efficientvmamba_t", ["stages.embed_dim=96", "stages.depths=[2,2,9,2]"], 33_717_136),
], ids=["vmamba_t_s1l8", "efficientvmamba_b"])
def test_sibling_configs_are_overrides_with_exact_official_counts(name, overrides, params):
    assert count_params(build_model(str(ZOO / f"{name}.yaml"), overrides, device="meta")) == params


def test_efficientvmamba_t_structure():
    """Atrous scan and one shared channel attention in stages 0-1; inverted residuals in stages 2-3."""
    model = build_model(str(ZOO / "efficientvmamba_t.yaml"), device="meta")
    evss = model.stages[1].blocks[0]
    assert evss.ssm.scan_order == "atrous" and evss.ssm.A_log.shape == (4 * 192, 16)
    assert "reuse" not in dict(evss.named_children()) and evss.se.channels == 12  # int(96 * 0.125)
    assert sum(p.numel() for p in evss.se.parameters()) == 2 * 96 + (96 * 12 + 12) + (12 * 96 + 96)
    ir = model.stages[2].blocks[0]
    assert ir.conv_pw.weight.shape == (768, 192) and ir.se.channels == 96 and ir.se.norm is None


def test_efficientvmamba_t_tiny_runs_on_odd_grids():
    """Image 36: grids 9x9 and 5x5 in the atrous stages (the zero-padded sub-grids)."""
    model = build_model(str(ZOO / "efficientvmamba_t.yaml"), [*TINY[:-1], "image_size=36"]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 36, 36))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
