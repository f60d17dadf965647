"""Comparison helper shared by the op tests (fla style).

``assert_close(name, ref, out, atol, rtol)`` prints the max-abs and the RMS-relative error of
``out`` against ``ref`` and fails on NaN/Inf or when either error is above its tolerance.
"""
from __future__ import annotations

import torch

__all__ = ["errors", "assert_close"]


def errors(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """Return ``(max_abs_error, rms_relative_error)`` of ``out`` against ``ref`` (any shape)."""
    ref64 = ref.detach().double()
    out64 = out.detach().double()
    diff = out64 - ref64
    max_abs = diff.abs().max().item() if diff.numel() else 0.0
    rms_ref = ref64.pow(2).mean().sqrt().item() if ref64.numel() else 0.0
    rms_diff = diff.pow(2).mean().sqrt().item() if diff.numel() else 0.0
    rel = rms_diff / max(rms_ref, 1e-30)
    return max_abs, rel


def assert_close(
    name: str, ref: torch.Tensor, out: torch.Tensor, atol: float, rtol: float | None = None
) -> None:
    """Fail unless ``out`` matches ``ref``: same shape, no NaN/Inf, max-abs error <= ``atol``.

    With ``rtol`` given, an RMS-relative error <= ``rtol`` also passes (for tensors of large
    magnitude, e.g. gradients, where an absolute tolerance means little).
    """
    if ref.shape != out.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{name}: output has NaN/Inf")
    if not torch.isfinite(ref).all():
        raise AssertionError(f"{name}: reference has NaN/Inf")
    max_abs, rel = errors(ref, out)
    msg = f"{name:>12} max-abs err {max_abs:.3e}  rms-rel err {rel:.3e}"
    print(msg)
    if not (max_abs <= atol or (rtol is not None and rel <= rtol)):
        raise AssertionError(f"{msg} (atol {atol:g}, rtol {rtol})")
