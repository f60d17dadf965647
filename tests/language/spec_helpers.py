"""Shared helpers for the spec tests."""
from __future__ import annotations

import textwrap
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write(dir: Path, name: str, text: str) -> Path:
    """Write dedented ``text`` to ``dir/name`` and return the path."""
    p = Path(dir) / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


TINY = """\
name: tiny
layout: hierarchical
image_size: 32
num_classes: 10
stem: mlla_stem
stages:
  dims: [8, 16]
  depths: [1, 2]
  heads: [2, 4]
downsample: mlla_merge
block: {type: mlla, mlp_ratio: 2.0}
mixer:
  type: linear_attention
  positional: [rope2d, lepe]
head: norm_pool_linear
"""
