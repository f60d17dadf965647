"""The compiled form of a block template: a *program* of plain Python nodes (sequence / residual /
branch / leaf) run by a :class:`Scope` module on which the leaf modules are registered flat.

Every node runs ``(x[B, N, C], hw) -> (x', hw')``; only a strided leaf changes ``hw``.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

__all__ = ["Scope", "TemplateBlock"]


# ==================================================================================================
# program nodes (plain objects; their leaf modules are registered on the enclosing Scope)


class _Node:
    def run(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _Leaf(_Node):
    def __init__(self, key: str, module: nn.Module):
        self.key, self.module = key, module
        self.returns_hw = bool(getattr(module, "returns_hw", False))

    def run(self, x, hw):
        if self.returns_hw:
            return self.module(x, hw)
        return self.module(x, hw), hw

    def describe(self) -> str:
        return self.key


class _Seq(_Node):
    def __init__(self, items: List[_Node]):
        self.items = items

    def run(self, x, hw):
        for it in self.items:
            x, hw = it.run(x, hw)
        return x, hw

    def describe(self) -> str:
        return "[" + ", ".join(i.describe() for i in self.items) + "]"


class _Residual(_Node):
    def __init__(self, body: _Node):
        self.body = body

    def run(self, x, hw):
        y, _ = self.body.run(x, hw)
        return x + y, hw

    def describe(self) -> str:
        return f"residual{self.body.describe()}" if isinstance(self.body, _Seq) else \
            f"residual[{self.body.describe()}]"


class _Branch(_Node):
    def __init__(self, paths: Dict[str, _Node], merge: str):
        self.paths, self.merge = paths, merge

    def run(self, x, hw):
        return self.merge_outputs([p.run(x, hw)[0] for p in self.paths.values()]), hw

    def merge_outputs(self, outs: List[torch.Tensor]) -> torch.Tensor:
        """The paths' outputs merged: concatenated on channels, multiplied or summed."""
        if self.merge == "concat":
            return torch.cat(outs, dim=-1)
        y = outs[0]
        for o in outs[1:]:
            y = y * o if self.merge == "mul" else y + o
        return y

    def describe(self) -> str:
        inner = "; ".join(f"{k}: {v.describe()}" for k, v in self.paths.items())
        return f"branch<{self.merge}>({inner})"


class Scope(nn.Module):
    """A module level holding leaf modules by key and the program that runs them.

    ``forward(x[B, N, C], hw) -> [B, N, C']`` (``(x, hw')`` when the program changes the grid).
    """

    def __init__(self) -> None:
        super().__init__()
        self.program: _Node = _Seq([])
        self.returns_hw = False

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]):
        y, hw2 = self.program.run(x, tuple(hw))
        return (y, hw2) if self.returns_hw else y

    def extra_repr(self) -> str:
        return f"program={self.program.describe()}"


class TemplateBlock(Scope):
    """A block compiled from a template: ``forward(x[B, N, C], hw) -> [B, N, C]``."""

    def __init__(self, template: str, dim: int):
        super().__init__()
        self.template, self.dim = template, dim

    def extra_repr(self) -> str:
        return f"template={self.template}, dim={self.dim}, program={self.program.describe()}"
