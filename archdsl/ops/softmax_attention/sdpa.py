"""Softmax attention through ``F.scaled_dot_product_attention``."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_bias: Optional[torch.Tensor] = None,
    *,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """softmax(q kᵀ·scale + attn_bias) v. q: [..., Nq, D], k: [..., Nk, D], v: [..., Nk, Dv].

    ``attn_bias``: additive float bias (or bool mask, True = keep) broadcastable to [..., Nq, Nk];
    ``scale`` defaults to 1/√D. Returns [..., Nq, Dv].
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"expected q [..., Nq, D], k [..., Nk, D], v [..., Nk, Dv]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if attn_bias is not None and attn_bias.dtype != torch.bool:
        attn_bias = attn_bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=scale)
