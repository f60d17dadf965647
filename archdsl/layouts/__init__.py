"""Macro layouts: ``LAYOUTS[name](spec, compiler) -> ArchModel`` (hierarchical, isotropic)."""
from __future__ import annotations

from archdsl.layouts.hierarchical import build_hierarchical
from archdsl.layouts.isotropic import build_isotropic
from archdsl.layouts.model import ArchModel, Stage

LAYOUTS = {"hierarchical": build_hierarchical, "isotropic": build_isotropic}

__all__ = ["LAYOUTS", "ArchModel", "Stage", "build_hierarchical", "build_isotropic"]
