"""Token mixers (registry kind ``mixer``): ``cls(dim, heads, **options)``,
``forward(x: [B, N, C], hw: (H, W)) -> [B, N, C]``.

- ``softmax_attention``  global or (shifted-)window softmax attention, Swin relative position bias.
- ``linear_attention``   linear attention with the paper's six switches (MLLA's attention by default).
- ``selective_ssm``      the Mamba S6 selective scan over a 2-D scan order.
Shared option: ``positional`` (a list of "rope2d" / "lepe") where it makes sense. See docs/mixers.md.
"""
from __future__ import annotations

from typing import Iterable, Tuple

__all__ = ["check_dim_heads", "parse_positional"]


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
