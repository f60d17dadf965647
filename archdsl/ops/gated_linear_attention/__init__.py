"""Linear attention with a data-dependent forget gate (GLA / Mamba-2 SSD), chunked + reference.

S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t ; o_t = q_t S_t  [; z_t = exp(g_t) ⊙ z_{t-1} + k_t ;
o_t /= q_t·z_t + eps].
"""
from .chunk import chunk_gated_linear_attention
from .naive import recurrent_gated_linear_attention_ref

__all__ = ["chunk_gated_linear_attention", "recurrent_gated_linear_attention_ref"]
