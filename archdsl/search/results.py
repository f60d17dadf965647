"""Search results: ``trials.csv``, ``pareto.csv``, ``pareto/trial_N.yaml``, ``pareto.png``, a rich table.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader (or a Ctrl-C) never sees half a file. The Pareto front is computed over COMPLETE, feasible
trials on the study's objectives; with a single objective it is the best trial(s).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from archdsl.files import write_atomic

__all__ = ["pareto_front", "study_front", "trial_rows", "export_results", "results_table", "is_feasible",
           "METRIC_COLUMNS"]

METRIC_COLUMNS = ("number", "state", "feasible", "mixer", "block", "rung", "epochs", "accuracy", "accuracy_std",
                  "images_per_s", "params", "macs", "train_seconds", "duplicate_of", "promoted_from", "fail_reason")
_ATTR = {"accuracy": "accuracy", "throughput": "images_per_s", "params": "params", "macs": "macs"}


def is_feasible(t: FrozenTrial) -> bool:
    cons = t.user_attrs.get("constraints")
    if cons is None:
        return bool(t.user_attrs.get("feasible", True))
    return all(float(c) <= 0 for c in cons)


def _dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    better_or_equal = all(s * x >= s * y for x, y, s in zip(a, b, signs))
    strictly = any(s * x > s * y for x, y, s in zip(a, b, signs))
    return better_or_equal and strictly


def pareto_front(trials: Iterable[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """Non-dominated COMPLETE feasible trials, by number (a repeated architecture counts once: trials
    with ``duplicate_of`` are left out; equal values of different architectures are all kept)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    cand = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and is_feasible(t)
            and all(math.isfinite(v) for v in t.values) and "duplicate_of" not in t.user_attrs]
    front = [t for t in cand if not any(_dominates(o.values, t.values, signs) for o in cand if o is not t)]
    return sorted(front, key=lambda t: t.number)


def study_front(study: Any, trials: Sequence[FrozenTrial], n_rungs: int = 1,
                min_accuracy: float | None = None) -> list[FrozenTrial]:
    """The front to report, by number: Optuna's ``best_trials`` (which respects the constraints), less
    repeats of an earlier architecture (``duplicate_of``) and trials under the accuracy floor. With
    successive halving (``n_rungs > 1``) the front of the top-rung trials only (``pareto_front``),
    since lower rungs trained for fewer epochs."""
    if n_rungs > 1:
        directions = [d.name.lower() for d in study.directions]
        front = pareto_front([t for t in trials if int(t.user_attrs.get("rung", 0)) == n_rungs - 1], directions)
    else:
        front = sorted((t for t in study.best_trials if "duplicate_of" not in t.user_attrs), key=lambda t: t.number)
    if min_accuracy is None:
        return front
    return [t for t in front if (t.user_attrs.get("accuracy") or 0.0) >= min_accuracy]


def trial_rows(trials: Iterable[FrozenTrial]) -> tuple[list[str], list[dict]]:
    """One flat dict per trial (metrics first, then the sampled parameters), and the column order."""
    trials = list(trials)
    param_names: list[str] = []
    for t in trials:
        for k in t.params:
            if k not in param_names:
                param_names.append(k)
    rows = []
    for t in trials:
        u = t.user_attrs
        row = {
            "number": t.number,
            "state": "INTERRUPTED" if u.get("interrupted") else t.state.name,
            "feasible": is_feasible(t) if t.state == TrialState.COMPLETE else "",
            "mixer": u.get("mixer", ""),
            "block": u.get("block", ""),
            "rung": u.get("rung", ""),
            "epochs": (u.get("train") or {}).get("epochs", ""),
            "accuracy": _fmt(u.get("accuracy")),
            "accuracy_std": _fmt(u.get("accuracy_std")),
            "images_per_s": _fmt(u.get("images_per_s")),
            "params": u.get("params", ""),
            "macs": u.get("macs", ""),
            "train_seconds": _fmt(u.get("train_seconds")),
            "duplicate_of": u.get("duplicate_of", ""),
            "promoted_from": u.get("promoted_from", ""),
            "fail_reason": u.get("fail_reason", u.get("infeasible", "")),
        }
        for k in param_names:
            v = t.params.get(k, "")
            row[f"param:{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
        rows.append(row)
    return list(METRIC_COLUMNS) + [f"param:{k}" for k in param_names], rows


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    return "" if v is None else v


def _csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _trial_yaml(t: FrozenTrial, study_name: str, objectives: Sequence[str]) -> str:
    vals = ", ".join(f"{o}={v:.6g}" for o, v in zip(objectives, t.values or []))
    header = (f"# archdsl search: study '{study_name}', trial {t.number} (Pareto-optimal)\n"
              f"# {vals}; params={t.user_attrs.get('params')}, macs={t.user_attrs.get('macs')}\n"
              f"# build it: archdsl build trial_{t.number}.yaml\n")
    return header + t.user_attrs["spec"]


def export_results(study: Any, out_dir: str | os.PathLike, objectives: Sequence[str], n_rungs: int = 1,
                   min_accuracy: float | None = None) -> dict:
    """Write every result file; returns ``{"trials": [...], "pareto": [...], "files": [...]}``."""
    out = Path(out_dir)
    trials = study.get_trials(deepcopy=False)
    front = study_front(study, trials, n_rungs, min_accuracy)
    columns, rows = trial_rows(trials)
    files = []
    write_atomic(out / "trials.csv", _csv(columns, rows))
    files.append(out / "trials.csv")
    front_numbers = {t.number for t in front}
    write_atomic(out / "pareto.csv", _csv(columns, [r for r in rows if r["number"] in front_numbers]))
    files.append(out / "pareto.csv")
    pdir = out / "pareto"
    pdir.mkdir(parents=True, exist_ok=True)
    keep = set()
    for t in front:
        if "spec" not in t.user_attrs:
            continue
        name = f"trial_{t.number}.yaml"
        keep.add(name)
        write_atomic(pdir / name, _trial_yaml(t, study.study_name, objectives))
        files.append(pdir / name)
    for old in pdir.glob("trial_*.yaml"):      # trials that left the front
        if old.name not in keep:
            old.unlink()
    png = plot_pareto(trials, out / "pareto.png", front, n_rungs, min_accuracy)
    if png:
        files.append(png)
    return {"trials": trials, "pareto": front, "files": files}


def plot_pareto(trials: Sequence[FrozenTrial], path: Path, front: Sequence[FrozenTrial] | None = None,
                n_rungs: int = 1, min_accuracy: float | None = None) -> Path | None:
    """Accuracy vs images/s of every trained trial, labelled by number, error bars = the std over
    seeds (``--seeds``); the front (default: the 2-D front of the points) drawn in black. With
    successive halving, trials below the top rung are drawn faded (they trained for fewer epochs)."""
    pts = [t for t in trials if t.state == TrialState.COMPLETE and is_feasible(t)
           and "duplicate_of" not in t.user_attrs and t.user_attrs.get("accuracy") is not None
           and t.user_attrs.get("images_per_s")]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    if pts:
        if front is None:
            vals = [(t.user_attrs["accuracy"], t.user_attrs["images_per_s"]) for t in pts]
            front = [t for t, v in zip(pts, vals) if not any(_dominates(o, v, (1, 1)) for o in vals if o != v)]
        fnums = {t.number for t in front}
        mixers = sorted({t.user_attrs.get("mixer", "?") for t in pts})
        cmap = plt.get_cmap("tab10")
        for i, m in enumerate(mixers):
            for top in (False, True):
                sel = [t for t in pts if t.user_attrs.get("mixer", "?") == m
                       and (int(t.user_attrs.get("rung", 0)) == n_rungs - 1) == top]
                if sel:
                    ax.errorbar([t.user_attrs["images_per_s"] for t in sel],
                                [t.user_attrs["accuracy"] * 100 for t in sel],
                                yerr=[t.user_attrs.get("accuracy_std", 0.0) * 100 for t in sel], fmt="o", ms=5,
                                alpha=0.75 if top else 0.25, color=cmap(i % 10), capsize=2,
                                label=m if top else None)
        front = sorted(front, key=lambda t: t.user_attrs.get("images_per_s") or 0)
        ax.plot([t.user_attrs["images_per_s"] for t in front], [t.user_attrs["accuracy"] * 100 for t in front],
                "-o", color="black", mfc="none", ms=10, lw=1.2, label="Pareto front")
        for t in pts:
            ax.annotate(str(t.number), (t.user_attrs["images_per_s"], t.user_attrs["accuracy"] * 100),
                        textcoords="offset points", xytext=(4, 3),
                        fontsize=7, fontweight="bold" if t.number in fnums else "normal")
        if min_accuracy:
            ax.axhline(min_accuracy * 100, color="grey", ls="--", lw=1, label=f"floor {min_accuracy * 100:.1f}%")
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no completed feasible trials yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("throughput (images/s, log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("archdsl search: accuracy vs throughput (labels = trial numbers)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def _acc_cell(u: dict) -> str:
    """``95.28`` or, with several seeds, ``95.28 ± 0.61`` (percent)."""
    if u.get("accuracy") is None:
        return "-"
    std = u.get("accuracy_std")
    return f"{100 * u['accuracy']:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def results_table(front: Sequence[FrozenTrial], objectives: Sequence[str], *, title: str) -> Any:
    """A ``rich.table.Table`` of the Pareto-optimal trials, best accuracy first."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col, just in (("trial", "right"), ("mixer", "left"), ("block", "left"), ("accuracy %", "right"),
                      ("images/s", "right"), ("params (M)", "right"), ("MMACs", "right"), ("spec", "left")):
        table.add_column(col, justify=just)
    for t in sorted(front, key=lambda t: -(t.user_attrs.get("accuracy") or 0)):
        u = t.user_attrs
        table.add_row(str(t.number), str(u.get("mixer", "")), str(u.get("block", "")),
                      _acc_cell(u),
                      f"{u['images_per_s']:.0f}" if u.get("images_per_s") else "-",
                      f"{u['params'] / 1e6:.3f}" if u.get("params") is not None else "-",
                      f"{u['macs'] / 1e6:.2f}" if u.get("macs") is not None else "-",
                      f"pareto/trial_{t.number}.yaml")
    return table
