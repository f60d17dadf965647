"""How far to trust the proxy: re-train some trials longer, with more seeds, and compare.

``check_fidelity(study, ctx, front, k=K, long_epochs=E, seeds=S)`` picks ``K`` trials (the Pareto
front first, up to half of ``K``, then trials spread evenly over the accuracy ranking of the other
trained, feasible, distinct architectures: best and worst included), re-trains each at ``E`` epochs
with ``S`` seeds (``train.seed + i``) on the search's data and recipe, and reports

* **Kendall tau** between the proxy accuracy and the long-budget accuracy (mean over seeds) of the
  ``K`` trials (``scipy.stats.kendalltau``, tau-b) with its p-value: 1 = the proxy ranks them as the
  long training does, 0 = no relation;
* **seed spread**: the mean over the ``K`` trials of the standard deviation (ddof 1) of their
  long-budget accuracy across seeds, in accuracy points; rank differences below it are noise;
* **top-k overlap**: of the ``k = max(1, round(K / 3))`` best trials by proxy accuracy, how many are
  among the ``k`` best by long-budget accuracy.

Every long-budget accuracy is stored in the study (``study.user_attrs['fidelity:N:E:SEED']``), so a
second call re-uses them (Ctrl-C loses at most the training in progress). Files: ``fidelity.csv``
(one row per trial), ``fidelity.json`` (the summary), ``fidelity.png`` (proxy vs long accuracy, error
bars = seed std, front trials in black, labels = trial numbers).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau

from archdsl.files import write_atomic
from archdsl.search.objective import TrialContext, seed_stats, train_seeds
from archdsl.search.results import _csv
from archdsl.train import TrainConfig

__all__ = ["select_trials", "check_fidelity", "fidelity_summary", "FIDELITY_COLUMNS"]

FIDELITY_COLUMNS = ("number", "mixer", "block", "on_front", "proxy_epochs", "proxy_accuracy", "long_epochs",
                    "long_accuracy", "long_std", "seed_accuracies")


def _pool(trials: Sequence[FrozenTrial], rung: int | None) -> list[FrozenTrial]:
    """Trained, feasible, distinct COMPLETE trials (of ``rung`` when given), best accuracy first."""
    pool = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("accuracy") is not None
            and "duplicate_of" not in t.user_attrs and "infeasible" not in t.user_attrs and "spec" in t.user_attrs
            and (rung is None or int(t.user_attrs.get("rung", 0)) == rung)]
    return sorted(pool, key=lambda t: (-t.user_attrs["accuracy"], t.number))


def select_trials(trials: Sequence[FrozenTrial], front: Sequence[FrozenTrial], k: int,
                  rung: int | None = None) -> list[FrozenTrial]:
    """``k`` trials: the front (at most ``ceil(k / 2)``, most accurate first), then the rest spread
    evenly over the accuracy ranking of the pool (its best and worst included)."""
    pool = _pool(trials, rung)
    numbers = {t.number for t in pool}
    chosen = [t for t in sorted(front, key=lambda t: -t.user_attrs.get("accuracy", 0)) if t.number in numbers]
    chosen = chosen[: (k + 1) // 2]
    rest = [t for t in pool if t.number not in {c.number for c in chosen}]
    want = min(k - len(chosen), len(rest))
    if want > 0:
        idx = np.unique(np.round(np.linspace(0, len(rest) - 1, want)).astype(int))
        chosen += [rest[i] for i in idx]
    return chosen


def _long_accuracy(study: Any, t: FrozenTrial, ctx: TrialContext, epochs: int, seed: int) -> float:
    key = f"fidelity:{t.number}:{epochs}:{seed}"
    if key in study.user_attrs:
        return float(study.user_attrs[key])
    cfg = TrainConfig(**t.user_attrs["train"]).replace(epochs=epochs)
    spec = yaml.safe_load(t.user_attrs["spec"])
    _, runs = train_seeds(spec, cfg, ctx, f"<{study.study_name} trial {t.number} (fidelity)>", [seed])
    study.set_user_attr(key, runs[0].accuracy)
    return runs[0].accuracy


def fidelity_summary(rows: list[dict]) -> dict:
    """Kendall tau, seed spread and top-k overlap of fidelity rows (see the module docstring)."""
    proxy = np.array([r["proxy_accuracy"] for r in rows], dtype=float)
    long = np.array([r["long_accuracy"] for r in rows], dtype=float)
    tau, p = kendalltau(proxy, long) if len(rows) >= 2 else (float("nan"), float("nan"))
    top = max(1, round(len(rows) / 3))
    by_proxy = {rows[i]["number"] for i in np.argsort(-proxy, kind="stable")[:top]}
    by_long = {rows[i]["number"] for i in np.argsort(-long, kind="stable")[:top]}
    return {"trials": len(rows), "kendall_tau": float(tau), "kendall_p": float(p),
            "seed_spread_points": float(np.mean([r["long_std"] for r in rows]) * 100) if rows else float("nan"),
            "top_k": top, "top_k_overlap": len(by_proxy & by_long)}


def check_fidelity(study: Any, ctx: TrialContext, front: Sequence[FrozenTrial], out_dir: str | Path, *,
                   k: int, long_epochs: int, seeds: int = 2, rung: int | None = None,
                   log: Callable[[str], None] = lambda s: None) -> dict | None:
    """Re-train, compare, write ``fidelity.csv`` / ``.json`` / ``.png``; returns the summary (plus
    ``rows``), or None when fewer than 2 trials can be compared. ``rung``: with ``--fidelity``, the
    top rung (whose accuracies are the proxy compared)."""
    if k < 2 or long_epochs < 1 or seeds < 1:
        raise ValueError(f"--check-fidelity needs K >= 2, --long-epochs >= 1 and seeds >= 1; got K={k}, "
                         f"long epochs {long_epochs}, seeds {seeds}")
    trials = study.get_trials(deepcopy=False)
    chosen = select_trials(trials, front, k, rung)
    if len(chosen) < 2:
        log(f"fidelity check skipped: {len(chosen)} trained trial(s) to compare (need 2)")
        return None
    front_numbers = {t.number for t in front}
    rows = []
    for i, t in enumerate(chosen):
        base = int(t.user_attrs["train"].get("seed", 0))
        accs = [_long_accuracy(study, t, ctx, long_epochs, base + s) for s in range(seeds)]
        mean, std = seed_stats(accs)
        rows.append({"number": t.number, "mixer": t.user_attrs.get("mixer", ""), "block": t.user_attrs.get("block", ""),
                     "on_front": t.number in front_numbers, "proxy_epochs": t.user_attrs["train"]["epochs"],
                     "proxy_accuracy": t.user_attrs["accuracy"], "long_epochs": long_epochs,
                     "long_accuracy": mean, "long_std": std, "seed_accuracies": accs})
        log(f"fidelity {i + 1}/{len(chosen)}: trial {t.number} proxy {t.user_attrs['accuracy'] * 100:.1f}% -> "
            f"{long_epochs} epochs {mean * 100:.1f}% ± {std * 100:.1f}")
    summary = fidelity_summary(rows)
    out = Path(out_dir)
    write_atomic(out / "fidelity.csv", _csv(list(FIDELITY_COLUMNS), [
        {**r, "seed_accuracies": " ".join(f"{a:.4f}" for a in r["seed_accuracies"])} for r in rows]))
    write_atomic(out / "fidelity.json", json.dumps({**summary, "long_epochs": long_epochs, "seeds": seeds,
                                                    "rows": rows}, indent=2) + "\n")
    _plot(rows, summary, out / "fidelity.png")
    return {**summary, "rows": rows}


def _plot(rows: list[dict], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    for on_front, colour, label in ((False, "tab:blue", "spread over the ranking"), (True, "black", "Pareto front")):
        sel = [r for r in rows if r["on_front"] == on_front]
        if sel:
            ax.errorbar([r["proxy_accuracy"] * 100 for r in sel], [r["long_accuracy"] * 100 for r in sel],
                        yerr=[r["long_std"] * 100 for r in sel], fmt="o", color=colour, capsize=3, label=label)
    for r in rows:
        ax.annotate(str(r["number"]), (r["proxy_accuracy"] * 100, r["long_accuracy"] * 100),
                    textcoords="offset points", xytext=(4, 3), fontsize=7)
    if rows:
        ax.set_xlabel(f"proxy accuracy % ({rows[0]['proxy_epochs']} epochs)")
        ax.set_ylabel(f"accuracy % at {rows[0]['long_epochs']} epochs (mean ± std over seeds)")
    ax.set_title(f"fidelity: Kendall tau {summary['kendall_tau']:.2f}, seed spread "
                 f"{summary['seed_spread_points']:.1f} pts, top-{summary['top_k']} overlap "
                 f"{summary['top_k_overlap']}/{summary['top_k']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
