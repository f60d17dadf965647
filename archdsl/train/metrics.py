"""What a run leaves in its folder besides checkpoints: ``metrics.csv`` (one row per epoch),
``steps.csv`` (the loss and learning rate of every optimizer step) and ``curves.png`` (loss and
accuracy). Every file is rewritten atomically from the full history, so a resumed run's files hold
exactly the rows of the epochs and steps it has done."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from archdsl.files import write_atomic

__all__ = ["EPOCH_COLUMNS", "write_metrics", "write_steps", "plot_curves"]

EPOCH_COLUMNS = ("epoch", "train_loss", "val_top1", "val_top5", "ema_top1", "ema_top5", "lr", "images_per_s",
                 "seconds")


def _csv(columns: Sequence[str], rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def write_metrics(out: Path, history: Sequence[dict]) -> None:
    """``metrics.csv``: epoch, train_loss, val_top1, val_top5 (percent), ema_top1/5, lr, images_per_s, seconds."""
    write_atomic(out / "metrics.csv", _csv(EPOCH_COLUMNS, history))


def write_steps(out: Path, losses: Sequence[float], lrs: Sequence[float]) -> None:
    """``steps.csv``: step (1-based optimizer step), loss (mean over the global batch), lr."""
    rows = [{"step": i + 1, "loss": repr(float(loss)), "lr": lr} for i, (loss, lr) in enumerate(zip(losses, lrs))]
    write_atomic(out / "steps.csv", _csv(("step", "loss", "lr"), rows))


def plot_curves(out: Path, history: Sequence[dict], steps_per_epoch: int, losses: Sequence[float]) -> None:
    """``curves.png``: training loss per step (and per epoch), validation top-1 / top-5 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    if losses:
        ax_loss.plot([(i + 1) / max(1, steps_per_epoch) for i in range(len(losses))], losses, lw=0.6,
                     alpha=0.5, label="per step")
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_loss.legend()
    for key, label in (("val_top1", "top-1"), ("val_top5", "top-5"), ("ema_top1", "EMA top-1")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, values, "o-", label=label)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    write_atomic(out / "curves.png", fig.savefig, suffix=".png")
