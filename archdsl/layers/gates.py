"""Multiplicative gates for block templates: ``branch: {..., gate: [...], merge: mul}``.

``Gate(dim, act, proj, bias)`` computes ``act(Linear(x))`` (or ``act(x)`` with ``proj=False``);
x: [B, N, C] -> [B, N, C]. The compiler's ``gate`` primitive constructs it with exactly this
signature, so keep it stable.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from archdsl.layers.base import HW, TokenModule

_ACTS = {"sigmoid": nn.Sigmoid, "silu": nn.SiLU}


class Gate(TokenModule):
    """``g = act(x W + b)``: the gate branch of a gated block. x: [B, N, C] -> [B, N, C].

    act: "sigmoid" or "silu" (MLLA/Mamba use silu); proj: apply a Linear(C, C) first (the
    ``act_proj`` of MLLA); bias: the Linear has a bias.
    """

    def __init__(self, dim: int, act: str = "sigmoid", proj: bool = True, bias: bool = True):
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"gate dim must be a positive integer; got {dim!r}")
        if act not in _ACTS:
            raise ValueError(f"unknown gate activation {act!r}; expected one of: {', '.join(_ACTS)}")
        self.dim = dim
        self.act_name = act
        self.proj: Optional[nn.Linear] = nn.Linear(dim, dim, bias=bias) if proj else None
        self.act = _ACTS[act]()

    def forward(self, x: torch.Tensor, hw: Optional[HW] = None) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"gate expects {self.dim} channels; got input of shape {tuple(x.shape)}")
        return self.act(self.proj(x) if self.proj is not None else x)

    def extra_repr(self) -> str:
        proj = "Linear" if self.proj is not None else "none"
        return f"dim={self.dim}, act={self.act_name}, proj={proj}"
