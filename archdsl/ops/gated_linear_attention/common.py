"""Argument checks shared by the gated linear attention forms."""
from __future__ import annotations

from typing import Optional

import torch

from .._numerics import compute_dtype as compute_dtype  # re-exported for the two forms


def check_args(q, k, v, log_decay, normalize: bool, initial_state: Optional[torch.Tensor]) -> None:
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be [B, H, T, K]; got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, H, T, V] with B, H, T of q {tuple(q.shape[:3])}; got {tuple(v.shape)}")
    if log_decay is not None:
        if log_decay.shape != q.shape[:3] and log_decay.shape != q.shape:
            raise ValueError(
                f"log_decay must be [B, H, T] (per head) or [B, H, T, K] (per key dim) = "
                f"{tuple(q.shape[:3])} or {tuple(q.shape)}; got {tuple(log_decay.shape)}"
            )
        if bool((log_decay > 0).any()):
            raise ValueError("log_decay must be <= 0 (decays exp(log_decay) in (0, 1])")
    if initial_state is not None:
        B, H, _, K = q.shape
        V = v.shape[-1] + (1 if normalize else 0)
        if initial_state.shape != (B, H, K, V):
            extra = " (V + 1 columns: the normalizer z is the last one)" if normalize else ""
            raise ValueError(
                f"initial_state must be [B, H, K, V] = {(B, H, K, V)}{extra}; got {tuple(initial_state.shape)}"
            )
