"""specs/zoo: VMamba-T v2 (vmamba_tiny_s2l5) and EfficientVMamba-T — the official parameter counts,
counted by instantiating the official code on CPU (see each spec's ``meta.official``), and tiny
versions that run."""
from __future__ import annotations

from pathlib import Path

import torch

from archdsl.analysis.summary import count_params
from archdsl.compiler import build_model
from archdsl.language import load_spec

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"
TINY = ["stages.embed_dim=8", "stages.depths=[1,1,1,1]", "num_classes=5", "image_size=32"]


def _count(name: str) -> int:
    return count_params(build_model(str(ZOO / f"{name}.yaml"), device="meta"))


def test_vmamba_t_v2_has_the_official_count_of_vmamba_tiny_s2l5():
    official = load_spec(str(ZOO / "vmamba_t_v2.yaml")).meta["official"]
    assert official["model"] == "vmamba_tiny_s2l5"
    assert _count("vmamba_t_v2") == official["params"] == 30_705_832


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
