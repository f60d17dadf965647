"""Numerical conventions shared by the chunked ops (selective_scan, gated linear attention)."""
from __future__ import annotations

import torch

# Largest accumulated log-decay a chunked form may exponentiate (exp(60) ~ 1e26 stays finite in fp32).
SAFE_LOG_RANGE = {torch.float32: 60.0, torch.float64: 600.0}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half/bfloat16/float32 inputs; float64 stays float64 (for gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
