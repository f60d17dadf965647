"""Top-1 / top-5 accuracy of a model over batches (sharded across processes: the counts are summed)."""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
import torch.nn as nn

from archdsl.train.distributed import Dist, sum_across

__all__ = ["evaluate", "autocast"]

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for ``--amp bf16|fp16``; a no-op context for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP[amp])


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, device: str | torch.device = "cpu", dist: Dist | None = None,
             amp: str = "none", channels_last: bool = False) -> tuple[float, float]:
    """``(top1, top5)`` in [0, 1] over ``batches`` of ``(x[B, C, H, W], y[B])`` (top-k with k <= classes)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64)            # top-1 hits, top-5 hits, images
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(x).float().cpu()                  # [B, K]
        y = torch.as_tensor(y)
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices     # [B, k]
        hit = top == y[:, None]
        counts += torch.tensor([float(hit[:, 0].sum()), float(hit.any(-1).sum()), float(y.numel())],
                               dtype=torch.float64)
    model.train(was_training)
    if dist is not None:
        counts = sum_across(counts.to(dist.device), dist).cpu()
    n = max(1.0, float(counts[2]))
    return float(counts[0]) / n, float(counts[1]) / n
