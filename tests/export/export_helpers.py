"""Shared by the export and timm tests: every shipped spec, made tiny (one block per stage, width 16)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from archdsl.compiler import build_model
from archdsl.language import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))  # specs/*.yaml, ablation/, zoo/, ...
IDS = [str(p.relative_to(ROOT / "specs")) for p in SPECS]
SIZE = (32, 64)  # non-square, a multiple of the total stride 32 (stage grids 8x16 ... 1x2)


def tiny_overrides(path: Path) -> List[str]:
    """--set lines that shrink a shipped spec: depth 1 per stage, width 16 (doubling), one head."""
    spec = load_spec(path)
    if spec.layout == "hierarchical":
        n = len(spec.stages.depths)
        ones = ",".join(["1"] * n)
        heads = [f"stages.heads=[{ones}]"] if spec.stages.heads else []   # SSM / conv-only specs name none
        return [f"stages.depths=[{ones}]", *heads, "stages.dims=null", "stages.embed_dim=16", "num_classes=5"]
    return ["depth=1", "dim=16", *(["heads=1"] if spec.heads else []), "num_classes=5"]


def tiny_model(path: Path):
    return build_model(path, tiny_overrides(path)).eval()
