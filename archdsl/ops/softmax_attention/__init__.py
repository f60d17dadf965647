"""Softmax attention (SDPA and the explicit reference) and the Swin window ops."""
from .naive import attention_ref
from .sdpa import attention
from .window import (
    padded_size,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "attention",
    "attention_ref",
    "window_partition",
    "window_reverse",
    "padded_size",
    "shifted_window_mask",
    "relative_position_index",
]
