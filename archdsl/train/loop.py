"""The one trainer: ``archdsl train`` and the search's proxy training (a recipe of it) both call
:func:`train`.

    result = train(model, recipe, data, epochs=3, seed=0)          # one process, in memory
    result = train(model, recipe, data, out_dir="runs/mlla_t", spec=resolved_spec_dict,
                   dist=setup("auto"), progress=True)                # checkpoints, metrics, DDP
    result.accuracy      # validation top-1 in [0, 1] after the last epoch

Per optimizer step: ``accum_steps`` micro-batches (in-memory data: per-batch augmentation; then
timm's Mixup/CutMix), autocast, loss (SoftTargetCrossEntropy with mixup, else label-smoothed cross
entropy), backward (DistributedDataParallel averages the gradients), gradient clipping, the
optimizer step, the scheduler's per-step update, the EMA update. A non-finite loss raises
:class:`NonFiniteLossError`. With ``out_dir``: ``last.pt`` every epoch (and every
``checkpoint_every`` steps, and on SIGTERM / Ctrl-C, after which :func:`train` returns with
``interrupted`` set), ``best.pt``, ``metrics.csv``, ``steps.csv``, ``curves.png``; rank 0 writes.
"""
from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from archdsl.data import DataBundle, DataError
from archdsl.train import checkpoint as ck
from archdsl.train import metrics
from archdsl.train.data import BatchAugment, make_loaders, make_mixup
from archdsl.train.distributed import Dist, any_across, gather_objects, mean_across
from archdsl.train.evaluate import autocast, evaluate
from archdsl.train.recipe import Recipe

__all__ = ["train", "TrainResult", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the learning rate is usually too high)."""


@dataclass
class TrainResult:
    accuracy: float = 0.0            # validation top-1 after the last epoch, in [0, 1]
    top5: float = 0.0
    best_accuracy: float = 0.0
    history: list[dict] = field(default_factory=list)      # metrics.csv rows (accuracies in percent)
    step_losses: list[float] = field(default_factory=list)  # per optimizer step, mean over the global batch
    step_lrs: list[float] = field(default_factory=list)     # the learning rate of each optimizer step
    seconds: float = 0.0
    interrupted: int | None = None   # the signal that stopped the run (a checkpoint was written)


class _Stop:
    """SIGTERM / SIGINT -> a flag read between steps (installed only in the main thread)."""

    def __init__(self, enabled: bool):
        self.signum: int | None = None
        self._old: dict = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._catch)

    def _catch(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Trainer:
    """The state of one run in one process (see the module docstring)."""

    def __init__(self, model: nn.Module, recipe: Recipe, data: DataBundle, *, dist: Dist, seed: int,
                 epochs: int, out_dir: Path | None, spec: dict | None, log: Callable[[str], None]):
        self.recipe, self.data, self.dist, self.seed, self.epochs = recipe, data, dist, seed, epochs
        self.out, self.spec, self.log = out_dir, spec, log
        self.loaders = make_loaders(data, recipe, rank=dist.rank, world=dist.world, seed=seed,
                                    pin_memory=dist.device.type == "cuda")
        if make_mixup(recipe, data.num_classes) is not None and self.loaders.batch_per_process % 2:
            raise DataError(f"mixup/cutmix need an even batch per process, got {self.loaders.batch_per_process}")
        self.raw = self._place(model)
        self.optimizer = create_optimizer_v2(self.raw, recipe.opt, lr=recipe.peak_lr(), weight_decay=recipe.weight_decay,
                                             eps=recipe.opt_eps, betas=tuple(recipe.opt_betas))
        peak = recipe.peak_lr()
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, recipe.sched, num_epochs=epochs, warmup_epochs=recipe.warmup_epochs,
            min_lr=peak * recipe.min_lr_ratio, warmup_lr=peak * recipe.warmup_lr_ratio, step_on_epochs=False,
            updates_per_epoch=self.loaders.steps_per_epoch)
        self.ema = ModelEmaV3(self.raw, decay=recipe.ema_decay) if recipe.ema else None
        self.scaler = torch.amp.GradScaler(dist.device.type) if recipe.amp == "fp16" else None
        self.ddp = DistributedDataParallel(self.raw, device_ids=[dist.device] if dist.device.type == "cuda" else None) \
            if dist.active else None
        net = self.ddp or self.raw
        self.net = torch.compile(net) if recipe.compile else net
        self.mixup = make_mixup(recipe, data.num_classes)
        self.augment = BatchAugment(recipe, data.flip) if self.loaders.in_memory else None
        self.loss_fn = SoftTargetCrossEntropy() if self.mixup else \
            LabelSmoothingCrossEntropy(recipe.label_smoothing) if recipe.label_smoothing > 0 else nn.CrossEntropyLoss()
        self.loader_gen = torch.Generator()
        self.loaders.train.generator = self.loader_gen
        self.epoch = self.step = self.global_step = 0
        self.history: list[dict] = []
        self.step_losses: list[float] = []
        self.step_lrs: list[float] = []
        self.best = -1.0
        self.plotted = time.monotonic()
        _seed_all(seed * 1000 + dist.rank)     # augmentation / drop-path streams; differ per rank

    def _place(self, model: nn.Module) -> nn.Module:
        model = model.to(self.dist.device)
        if self.recipe.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.recipe.sync_bn and self.dist.active and self.dist.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    # ------------------------------------------------------------------ one optimizer step
    def _micro(self, x: torch.Tensor, y: torch.Tensor, last: bool) -> torch.Tensor:
        dev = self.dist.device
        if self.augment is not None:
            x = self.augment(x)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if self.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        sync = contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync()
        with sync:
            with autocast(dev, self.recipe.amp):
                loss = self.loss_fn(self.net(x), y) / self.recipe.accum_steps
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss.detach()

    def _step(self, batches: Any) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.dist.device)
        for i in range(self.recipe.accum_steps):
            x, y = next(batches)
            total = total + self._micro(x, torch.as_tensor(y), i == self.recipe.accum_steps - 1).float()
        loss = float(mean_across(total, self.dist))
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({loss}) at epoch {self.epoch + 1} step "
                                     f"{self.step + 1}; lower the learning rate (lr={self.recipe.peak_lr():g})")
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.recipe.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.raw.parameters(), self.recipe.grad_clip)
        self.step_lrs.append(self.optimizer.param_groups[0]["lr"])
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.global_step += 1
        self.scheduler.step_update(num_updates=self.global_step)
        if self.ema is not None:
            self.ema.update(self.raw, step=self.global_step)
        return loss

    # ------------------------------------------------------------------ epochs
    def run_epoch(self, stop: _Stop, progress: bool) -> bool:
        """Train the rest of ``self.epoch``; False when a signal stopped it (a checkpoint was written)."""
        lo = self.loaders
        lo.sampler.set_position(self.epoch, self.step * self.recipe.accum_steps)
        self.loader_gen.manual_seed(self.seed * 1_000_003 + self.epoch * 1009 + self.dist.rank)
        self.net.train()
        batches = iter(lo.train)
        bar = _bar(progress and self.dist.main, lo.steps_per_epoch, self.step, f"epoch {self.epoch + 1}/{self.epochs}")
        while self.step < lo.steps_per_epoch:
            self.step_losses.append(self._step(batches))
            self.step += 1
            if bar is not None:
                bar.set_postfix(loss=f"{self.step_losses[-1]:.4f}", lr=f"{self.step_lrs[-1]:.2e}", refresh=False)
                bar.update()
            every = self.recipe.checkpoint_every
            if any_across(stop.signum is not None, self.dist) if stop._old or self.dist.active else False:
                self.save(best=False)
                return False
            if every and self.global_step % every == 0 and self.step < lo.steps_per_epoch:
                self.save(best=False)
        if bar is not None:
            bar.close()
        return True

    def finish_epoch(self, seconds: float) -> dict:
        """Validate, record the epoch's row, checkpoint; -> the row (accuracies in percent)."""
        lo, r = self.loaders, self.recipe
        kw = dict(device=self.dist.device, dist=self.dist, amp=r.amp, channels_last=r.channels_last)
        top1, top5 = evaluate(self.raw, lo.val, **kw)
        ema1, ema5 = evaluate(self.ema.module, lo.val, **kw) if self.ema is not None else (None, None)
        done = self.step_losses[-lo.steps_per_epoch:]
        row = {"epoch": self.epoch + 1, "train_loss": sum(done) / max(1, len(done)),
               "val_top1": 100 * top1, "val_top5": 100 * top5,
               "ema_top1": None if ema1 is None else 100 * ema1, "ema_top5": None if ema5 is None else 100 * ema5,
               "lr": self.step_lrs[-1] if self.step_lrs else None,
               "images_per_s": lo.steps_per_epoch * r.batch_size / max(seconds, 1e-9), "seconds": seconds}
        self.history.append(row)
        improved = max(top1, ema1 or 0.0) > self.best
        self.best = max(self.best, top1, ema1 or 0.0)
        self.epoch, self.step = self.epoch + 1, 0
        self.save(best=improved)
        return row

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {"model": self.raw.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
                "ema": self.ema.state_dict() if self.ema is not None else None, "epoch": self.epoch,
                "step": self.step, "global_step": self.global_step, "spec": self.spec or {},
                "recipe": self.recipe.to_dict(), "history": self.history, "step_losses": self.step_losses,
                "step_lrs": self.step_lrs, "best_top1": self.best, "world": self.dist.world, "seed": self.seed,
                "epochs": self.epochs}

    def save(self, *, best: bool) -> None:
        """``last.pt`` (and ``best.pt`` when ``best``) plus the metrics files; rank 0 writes."""
        rngs = gather_objects(ck.rng_state(), self.dist)
        if self.out is None or not self.dist.main:
            return
        ck.save_atomic({**self.state(), "rng": rngs}, self.out / "last.pt")
        if best:
            weights = {"model": self.raw.state_dict(), "spec": self.spec or {}, "epoch": self.epoch,
                       "top1": self.best}
            if self.ema is not None:
                weights["model_ema"] = self.ema.module.state_dict()
            ck.save_atomic(weights, self.out / "best.pt")
        metrics.write_metrics(self.out, self.history)
        metrics.write_steps(self.out, self.step_losses, self.step_lrs)

    def plot(self, *, final: bool) -> None:
        """``curves.png``, at most once a minute while training (matplotlib is slow) and at the end."""
        if self.out is None or not self.dist.main or not self.history:
            return
        if final or time.monotonic() - self.plotted > 60:
            metrics.plot_curves(self.out, self.history, self.loaders.steps_per_epoch, self.step_losses)
            self.plotted = time.monotonic()

    def load(self, ckpt: dict) -> None:
        """Continue from a checkpoint of this spec and recipe (checked by the caller)."""
        self.raw.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.epoch, self.step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.history, self.best = list(ckpt["history"]), float(ckpt["best_top1"])
        self.step_losses, self.step_lrs = list(ckpt["step_losses"]), list(ckpt["step_lrs"])
        self.scheduler.step_update(num_updates=self.global_step)   # the schedule is a function of the step
        rngs = ckpt["rng"]
        if len(rngs) == self.dist.world:
            ck.set_rng_state(rngs[self.dist.rank])
        elif self.dist.main:
            self.log(f"note: the checkpoint has the RNG states of {len(rngs)} processes, this run has "
                     f"{self.dist.world}: random streams restart (the run continues, not bit-exactly)")


def _bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def train(model: nn.Module, recipe: Recipe, data: DataBundle, *, epochs: int | None = None,
          seed: int | None = None, device: str | torch.device = "cpu", dist: Dist | None = None,
          out_dir: str | Path | None = None, spec: dict | None = None, resume: dict | None = None,
          on_epoch_end: Callable[[int, float], None] | None = None, progress: bool = False,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` (a DataBundle), validating on ``data.val`` after every epoch.

    ``epochs`` / ``seed`` default to the recipe's. ``on_epoch_end(epoch, top1 in [0, 1])`` runs after
    each validation (a pruner may raise from it). ``resume``: a checkpoint dict (checked against the
    spec and recipe by the caller) to continue. Raises NonFiniteLossError, DataError.
    """
    epochs = int(epochs if epochs is not None else recipe.epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    seed = int(seed if seed is not None else recipe.seed)
    dist = dist or Dist(device=torch.device(device))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and dist.main:
        out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: None)
    t = Trainer(model, recipe, data, dist=dist, seed=seed, epochs=epochs, out_dir=out, spec=spec, log=log)
    if resume is not None:
        t.load(resume)
    stop = _Stop(out is not None)
    result = TrainResult(best_accuracy=max(0.0, t.best))
    start = time.perf_counter()
    try:
        while t.epoch < epochs:
            t0 = time.perf_counter()
            if not t.run_epoch(stop, progress):
                result.interrupted = stop.signum or signal.SIGTERM
                t.plot(final=True)
                break
            row = t.finish_epoch(time.perf_counter() - t0)
            t.plot(final=t.epoch == epochs)
            if dist.main:
                log(_summary(row, epochs))
            if on_epoch_end is not None:
                on_epoch_end(row["epoch"], row["val_top1"] / 100)
    finally:
        stop.restore()
    result.history, result.step_losses, result.step_lrs = t.history, t.step_losses, t.step_lrs
    if t.history:
        result.accuracy, result.top5 = t.history[-1]["val_top1"] / 100, t.history[-1]["val_top5"] / 100
    result.best_accuracy, result.seconds = max(0.0, t.best), time.perf_counter() - start
    return result


def _summary(row: dict, epochs: int) -> str:
    ema = f", EMA top-1 {row['ema_top1']:.2f}%" if row.get("ema_top1") is not None else ""
    return (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}, top-1 {row['val_top1']:.2f}%, "
            f"top-5 {row['val_top5']:.2f}%{ema}, lr {row['lr']:.2e}, {row['images_per_s']:.0f} images/s, "
            f"{row['seconds']:.1f} s")
