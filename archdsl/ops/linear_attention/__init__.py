"""Linear attention: feature maps, non-causal ``q (kᵀv)`` and causal (prefix-sum) forms.

Recurrence (causal): S_t = S_{t-1} + k_tᵀ v_t, z_t = z_{t-1} + k_t, o_t = q_t S_t / (q_t·z_t + eps).
Non-causal: the sums run over all N tokens. References (quadratic / loop) live in ``naive.py``.
"""
from .feature_maps import FEATURE_MAP_NAMES, feature_map
from .naive import causal_linear_attention_ref, linear_attention_ref
from .parallel import causal_linear_attention, linear_attention

__all__ = [
    "FEATURE_MAP_NAMES",
    "feature_map",
    "linear_attention",
    "linear_attention_ref",
    "causal_linear_attention",
    "causal_linear_attention_ref",
]
