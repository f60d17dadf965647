"""Token mixers (registry kind ``mixer``): ``cls(dim, heads, **options)``,
``forward(x: [B, N, C], hw: (H, W)) -> [B, N, C]``.

- ``softmax_attention``  global or (shifted-)window softmax attention, Swin relative position bias.
- ``linear_attention``   linear attention with the paper's six switches (MLLA's attention by default).
- ``selective_ssm``      the Mamba S6 selective scan over a 2-D scan order.
- ``dwconv``             a local-only baseline: depthwise k x k convolution + projection.
Shared option: ``positional`` (a list of "rope2d" / "lepe") where it makes sense. See docs/mixers.md.
"""
from __future__ import annotations

import math
from typing import Iterable, Tuple

import torch
from torch import nn

from archdsl.ops.scan_order import BIDIRECTIONAL, CROSS_SCAN_4

__all__ = ["SCAN_ORDERS", "SCAN_LOOP_REASON", "check_dim_heads", "parse_positional", "auto_rank",
           "init_dt_projection"]

# The ``scan_order`` option of the recurrent mixers: its name -> the 2-D scan directions.
SCAN_ORDERS = {"row": ("row",), "bidirectional": BIDIRECTIONAL, "cross4": CROSS_SCAN_4}

# ``fixed_size_reason`` of the recurrent mixers (ops/selective_scan/chunked.py and
# ops/gated_linear_attention/chunk.py loop over the chunks in Python while traced)
SCAN_LOOP_REASON = ("the causal scan is a Python loop over the ceil(L / 16) chunks of the token sequence "
                    "(L = H*W), carrying the state: a trace fixes the number of iterations, hence H*W")


def check_dim_heads(dim: int, heads: int) -> int:
    """Validate dim and heads; return head_dim = dim // heads (ValueError on bad values)."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise ValueError(f"heads must be a positive integer; got {heads!r}")
    if dim % heads:
        raise ValueError(f"dim {dim} is not divisible by heads {heads}")
    return dim // heads


def parse_positional(positional: Iterable[str] | str | None, allowed: Tuple[str, ...]) -> Tuple[str, ...]:
    """Normalise the ``positional`` option to a tuple of names; ValueError on unknown/duplicate."""
    if positional is None:
        return ()
    items = (positional,) if isinstance(positional, str) else tuple(positional)
    for p in items:
        if p not in allowed:
            raise ValueError(f"unknown positional encoding {p!r} for this mixer; expected any of: "
                             f"{', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise ValueError(f"positional lists an encoding twice: {list(items)}")
    return items


def auto_rank(dim: int) -> int:
    """Mamba's dt_rank rule: ceil(dim / 16)."""
    return math.ceil(dim / 16)


def init_dt_projection(proj: nn.Linear, rank: int, dt_min: float = 1e-3, dt_max: float = 0.1,
                       dt_init_floor: float = 1e-4, dt_scale: float = 1.0) -> None:
    """Mamba's dt_proj init (docs/paper.md §6) in place: weight U(±rank^-0.5·dt_scale); bias =
    softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max], floored at dt_init_floor. The bias gets
    ``_no_reinit = True`` (Mamba's flag) so a model-level init can leave it alone."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
    std = rank ** -0.5 * dt_scale
    with torch.no_grad():
        nn.init.uniform_(proj.weight, -std, std)
        dt = torch.exp(torch.rand(proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
    proj.bias._no_reinit = True  # type: ignore[attr-defined]
