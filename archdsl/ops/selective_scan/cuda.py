"""Optional dispatch to mamba_ssm's CUDA kernel (``selective_scan_fn``) for CUDA tensors."""
from __future__ import annotations

from typing import Callable, Optional

_fn: Optional[Callable] = None
_tried = False


def mamba_ssm_fn() -> Optional[Callable]:
    """mamba_ssm's ``selective_scan_fn`` when importable, else None (import attempted once)."""
    global _fn, _tried
    if not _tried:
        _tried = True
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # type: ignore

            _fn = selective_scan_fn
        except Exception:
            _fn = None
    return _fn


def selective_scan_cuda(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """Call mamba_ssm's kernel with the same arguments (same contract as selective_scan_ref)."""
    fn = mamba_ssm_fn()
    if fn is None:
        raise RuntimeError("mamba_ssm is not importable; the 'cuda' selective_scan backend is unavailable")
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
