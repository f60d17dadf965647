"""How much memory building a model and running one forward pass would take, measured on the
``meta`` device (nothing is allocated), so ``archdsl build`` can refuse before the allocator fails.

The estimate is ``weights + peak activations``: parameters and buffers of the model, plus the
largest total of tensors alive at once during a no-grad forward pass of ``[B, C, H, W]``, tracked
by a ``TorchDispatchMode`` that adds the bytes of every new (non-view) tensor an operator returns
and subtracts them when the tensor is freed. :func:`check_memory` compares it with the
``max_memory`` limit (:mod:`archdsl.language.limits`).
"""
from __future__ import annotations

import weakref
from typing import Any, Dict

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from archdsl.errors import SpecError
from archdsl.language.limits import env_name, limits

__all__ = ["estimate_memory", "check_memory", "format_bytes"]


def format_bytes(n: float) -> str:
    """``3221225472`` -> ``'3.0 GiB'``."""
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


class _PeakBytes(TorchDispatchMode):
    """Live bytes of the tensors operators create (views excluded: they share storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for i, t in enumerate(outs):
            aliased = i < len(returns) and returns[i].alias_info is not None
            if isinstance(t, torch.Tensor) and not aliased:
                n = t.numel() * t.element_size()
                self.live += n
                weakref.finalize(t, self._free, n)
        self.peak = max(self.peak, self.live)
        return out


def estimate_memory(model: nn.Module, image_size: int, batch_size: int = 1) -> Dict[str, int]:
    """``{"weights": bytes, "activations": bytes, "total": bytes}`` for ``model`` (built on the
    ``meta`` device) and one no-grad forward pass of a ``[batch_size, in_chans, S, S]`` batch."""
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    c = int(getattr(model, "in_chans", 3))
    x = torch.empty(batch_size, c, image_size, image_size, device="meta")
    mode = _PeakBytes()
    with torch.no_grad(), mode:
        model(x)
    activations = mode.peak + x.numel() * x.element_size()
    return {"weights": int(weights), "activations": int(activations), "total": int(weights + activations)}


def check_memory(model: nn.Module, image_size: int, batch_size: int = 1, *, where: Dict[str, Any] | None = None,
                 what: str = "building this model") -> Dict[str, int] | None:
    """Raise a :class:`SpecError` (located by ``where``) when :func:`estimate_memory` exceeds the
    ``max_memory`` limit; return the estimate (``None`` when the meta pass cannot run: some
    operator without a meta kernel, in which case nothing is refused). A ``ValueError`` of the model
    (an image too small for it) propagates."""
    try:
        est = estimate_memory(model, image_size, batch_size)
    except (NotImplementedError, RuntimeError):
        return None
    bound = limits().max_memory
    if est["total"] > bound:
        raise SpecError(f"{what} needs about {format_bytes(est['total'])} (weights {format_bytes(est['weights'])} "
                        f"+ forward pass {format_bytes(est['activations'])} at {image_size}x{image_size}, batch "
                        f"{batch_size}), more than allowed (limit max_memory = {format_bytes(bound)}; raise it "
                        f"with --max-memory SIZE or {env_name('max_memory')}=SIZE)", **(where or {}))
    return est
