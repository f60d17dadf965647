"""The small training recipe used as the search's accuracy proxy.

AdamW, linear warm-up then cosine decay to zero (per step), label smoothing, gradient clipping, light
augmentation applied per batch (random crop with zero padding, horizontal flip where the data set
allows it), a fixed seed. A non-finite loss stops training with :class:`NonFiniteLossError`.

    cfg = TrainConfig(epochs=3, batch_size=128, lr=2e-3)
    result = train_model(model, data, cfg, device="cpu", on_epoch=lambda epoch, acc: ...)
    result.accuracy   # validation top-1 in [0, 1] after the last epoch
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TrainConfig", "TrainResult", "NonFiniteLossError", "train_model", "evaluate", "augment",
           "lr_at"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the learning rate is usually too high)."""


@dataclass
class TrainConfig:
    epochs: int = 3                 # a proxy: ranks architectures, does not train them to convergence
    batch_size: int = 128
    lr: float = 2e-3                # peak learning rate (AdamW)
    weight_decay: float = 0.05      # as the paper's recipe (AdamW, wd 0.05)
    warmup_epochs: float = 0.5      # linear warm-up from lr/100 over this many epochs, then cosine to 0
    label_smoothing: float = 0.1    # as the paper's recipe
    grad_clip: float = 5.0          # max global grad norm (0 = off), as the paper's recipe
    crop_padding: int = 2           # random crop after zero padding by this many pixels (0 = off)
    flip: bool | None = None        # horizontal flip; None = what the data set says (digits: no)
    seed: int = 0                   # model init is the caller's; this seeds batch order and augmentation
    max_steps_per_epoch: int | None = None   # cap on steps per epoch (tests, quick smoke runs)


@dataclass
class TrainResult:
    accuracy: float                              # validation top-1 after the last epoch, in [0, 1]
    history: list[dict[str, float]] = field(default_factory=list)   # per epoch: loss, accuracy, seconds
    seconds: float = 0.0


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up from peak/100 to peak, then cosine to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (0.01 + 0.99 * (step + 1) / warmup_steps)
    rest = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / rest)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def augment(x: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and optional horizontal flip, per sample. ``x[B, C, H, W]``."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))                    # [B, C, H+2p, W+2p]
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (torch.arange(h)[None, :] + dy[:, None]).to(x.device)                # [B, H]
        cols = (torch.arange(w)[None, :] + dx[:, None]).to(x.device)                # [B, W]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]          # [B, C, H, W]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def evaluate(model: nn.Module, split: Any, *, batch_size: int = 256, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` on ``split`` (anything with ``batches(batch_size)``), in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in split.batches(batch_size):
        logits = model(x.to(device))
        correct += int((logits.argmax(-1).cpu() == y).sum())
        total += int(y.numel())
    model.train(was_training)
    return correct / max(1, total)


def train_model(model: nn.Module, data: Any, cfg: TrainConfig, *, device: str | torch.device = "cpu",
                on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` and return the validation accuracy (``data.val``).

    ``data`` is a :class:`archdsl.data.DataBundle`. ``on_epoch(epoch, accuracy)`` is called after each
    epoch's validation (a pruner hook: it may raise ``optuna.TrialPruned``). Raises
    :class:`NonFiniteLossError` as soon as the loss is NaN/inf.
    """
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    model.to(device)
    model.train()
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    n_train = len(data.train)
    steps_per_epoch = max(1, n_train // cfg.batch_size)   # drop_last; a split smaller than a batch gives one
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    flip = data.flip if cfg.flip is None else cfg.flip
    gen = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult(accuracy=0.0)
    start = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        batches = data.train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch,
                                     drop_last=True)
        for i, (x, y) in enumerate(batches):
            if i >= steps_per_epoch:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, cfg.lr)
            x = augment(x, padding=cfg.crop_padding, flip=flip, generator=gen).to(device)
            y = y.to(device)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch {epoch + 1} "
                                         f"step {i + 1}; lower the learning rate (lr={cfg.lr:g})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += float(loss.detach()) * y.shape[0]
            seen += y.shape[0]
            step += 1
        acc = evaluate(model, data.val, batch_size=max(cfg.batch_size, 256), device=device)
        result.history.append({"epoch": epoch + 1, "loss": loss_sum / max(1, seen), "accuracy": acc,
                               "seconds": time.perf_counter() - t0})
        result.accuracy = acc
        if on_epoch is not None:
            on_epoch(epoch + 1, acc)
    result.seconds = time.perf_counter() - start
    return result
