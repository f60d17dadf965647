"""Pure tensor ops of archdsl; each fast version has a naive reference beside it.

Nothing here imports archdsl.layers or archdsl.language. See docs/ops.md for the recurrences.
"""
from .gated_linear_attention import chunk_gated_linear_attention, recurrent_gated_linear_attention_ref
from .linear_attention import (
    FEATURE_MAP_NAMES,
    causal_linear_attention,
    causal_linear_attention_ref,
    feature_map,
    linear_attention,
    linear_attention_ref,
)
from .rope import apply_rope, rope1d_angles, rope1d_cos_sin, rope2d_angles, rope2d_cos_sin
from .scan_order import BIDIRECTIONAL, CROSS_SCAN_4, cross_merge, cross_scan, inverse_indices, scan_indices
from .selective_scan import (
    last_backend as selective_scan_last_backend,
)
from .selective_scan import (
    selective_scan,
    selective_scan_backend,
    selective_scan_ref,
)
from .softmax_attention import (
    attention,
    attention_ref,
    padded_size,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "chunk_gated_linear_attention", "recurrent_gated_linear_attention_ref",
    "FEATURE_MAP_NAMES", "causal_linear_attention", "causal_linear_attention_ref", "feature_map",
    "linear_attention", "linear_attention_ref",
    "apply_rope", "rope1d_angles", "rope1d_cos_sin", "rope2d_angles", "rope2d_cos_sin",
    "BIDIRECTIONAL", "CROSS_SCAN_4", "cross_merge", "cross_scan", "inverse_indices", "scan_indices",
    "selective_scan", "selective_scan_backend", "selective_scan_last_backend", "selective_scan_ref",
    "attention", "attention_ref", "padded_size", "relative_position_index", "shifted_window_mask",
    "window_partition", "window_reverse",
]
