"""Trace-safe caching: tables cached across eager calls are never built, stored or reused while a
tracer runs (``torch.compile``, ``torch.export``, ``torch.onnx.export``, ``torch.jit.trace``).

A tracer runs the model on fake (or symbolic) tensors; a table cached during tracing would be a
FakeTensor that later eager calls in the same process return (the bug this module fixes), and a
table cached in eager mode would be baked into a graph as a constant of one input size.
"""
from __future__ import annotations

from functools import lru_cache, wraps
from typing import Callable, TypeVar

import torch

__all__ = ["is_tracing", "trace_safe_cache", "clear_caches"]

F = TypeVar("F", bound=Callable)

_CACHES: list = []  # every trace_safe_cache, for clear_caches()


def is_tracing() -> bool:
    """True while torch.compile / torch.export / dynamo ONNX export (``is_compiling``) or the
    TorchScript tracer of the legacy ONNX exporter (``torch.jit.is_tracing``) runs."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def trace_safe_cache(maxsize: int) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize)`` in eager mode; a plain call (no lookup, no store) while
    :func:`is_tracing`. The wrapper keeps ``cache_clear`` / ``cache_info``."""

    def decorate(fn: F) -> F:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs) if is_tracing() else cached(*args, **kwargs)

        wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
        _CACHES.append(cached)
        return wrapper  # type: ignore[return-value]

    return decorate


def clear_caches() -> None:
    """Empty every :func:`trace_safe_cache` (the module-level RoPE / window / scan-order tables)."""
    for cached in _CACHES:
        cached.cache_clear()
