"""Reference softmax attention: the explicit formula."""
from __future__ import annotations

import math
from typing import Optional

import torch


def attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_bias: Optional[torch.Tensor] = None,
    *,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """softmax(q kᵀ/√D + attn_bias) v written out. Shapes as :func:`attention`."""
    s = (1.0 / math.sqrt(q.shape[-1])) if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * s
    if attn_bias is not None:
        if attn_bias.dtype == torch.bool:
            scores = scores.masked_fill(~attn_bias, float("-inf"))
        else:
            scores = scores + attn_bias
    return torch.softmax(scores, dim=-1) @ v
