"""Multi-fidelity for multi-objective search: asynchronous successive halving (ASHA) over epochs.

``--fidelity 1,3,9`` (rungs, in epochs) with reduction factor ``eta`` (default 3): every architecture
the sampler proposes is trained at rung 0 (1 epoch); whenever a worker is free it first looks for a
promotion, from the highest rung down: at rung ``k`` the best ``floor(n_k / eta)`` of the ``n_k``
trained, feasible, distinct architectures (NSGA-II order on the study's objectives: non-dominated
rank, then crowding distance; :mod:`archdsl.search.ranking`) that are not promoted yet go on to rung
``k + 1``, trained from scratch at that rung's epochs. Only when nothing is promotable does it ask
the sampler for a new architecture.

**Storage is the single source of truth.** A promotion is an Optuna trial of its own, created with
the source trial's parameters (``enqueue_trial``) and ``user_attrs`` ``rung`` and ``promoted_from``;
a rung-0 trial has ``rung: 0``. Every decision reads the study's trials under the study-wide lock
(``archdsl.search.study.study_lock``), so any number of workers, started and stopped at any time,
produce exactly: ``budget`` rung-0 trials, and ``floor(n_k / eta)`` promotions to every rung
``k + 1`` once all work is done (a promotion quota only grows with ``n_k``, and the worker that
finishes the last trial of a rung tops its promotions up). A promotion interrupted by Ctrl-C or a
dead worker does not count and is made again.

The final front is taken over the top rung only (:func:`top_rung_front`).
"""
from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from archdsl.search.ranking import nsga2_order
from archdsl.search.study import counts_toward_budget

__all__ = ["parse_rungs", "rung_of", "rung_members", "next_promotion", "ask_next", "top_rung_front",
           "cost_summary"]


def parse_rungs(text: str | Sequence[int]) -> list[int]:
    """``"1,3,9"`` -> ``[1, 3, 9]``; ValueError unless strictly increasing positive integers."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    try:
        rungs = [int(s) for s in items]
    except (TypeError, ValueError):
        raise ValueError(f"--fidelity takes epochs per rung like 1,3,9; got {text!r}") from None
    if not rungs or any(r < 1 for r in rungs) or any(b <= a for a, b in zip(rungs, rungs[1:])):
        raise ValueError(f"--fidelity rungs must be strictly increasing positive epochs (like 1,3,9); "
                         f"got {text!r}")
    return rungs


def rung_of(t: FrozenTrial) -> int:
    return int(t.user_attrs.get("rung", 0))


def rung_members(trials: Sequence[FrozenTrial], k: int) -> list[FrozenTrial]:
    """COMPLETE trials at rung ``k`` that trained a distinct architecture within the model
    constraints (not ``duplicate_of``, not ``infeasible``): the pool promotions are drawn from."""
    return [t for t in trials if t.state == TrialState.COMPLETE and rung_of(t) == k and t.values is not None
            and "duplicate_of" not in t.user_attrs and "infeasible" not in t.user_attrs]


def _promoted(trials: Sequence[FrozenTrial], k: int) -> set[int]:
    """Numbers of rung-``k`` trials already promoted (their promotion counts, or is running)."""
    return {int(t.user_attrs["promoted_from"]) for t in trials
            if rung_of(t) == k + 1 and "promoted_from" in t.user_attrs and counts_toward_budget(t)}


def next_promotion(trials: Sequence[FrozenTrial], n_rungs: int, directions: Sequence[str],
                   eta: int = 3) -> tuple[FrozenTrial, int] | None:
    """The trial to promote now and its new rung, or None (highest rung first)."""
    for k in range(n_rungs - 2, -1, -1):
        members = rung_members(trials, k)
        quota = len(members) // eta
        done = _promoted(trials, k)
        if len(done) >= quota:
            continue
        order = nsga2_order([m.values for m in members], directions)
        for i in order[:quota]:
            if members[i].number not in done:
                return members[i], k + 1
    return None


def ask_next(study: optuna.Study, *, budget: int, n_rungs: int, eta: int = 3) -> optuna.Trial | None:
    """Call under the study lock: a promotion if one is due, else a new rung-0 trial while fewer
    than ``budget`` count, else None (this worker is done; those still running top up the rest)."""
    trials = study.get_trials(deepcopy=False)
    directions = [d.name.lower() for d in study.directions]
    promo = next_promotion(trials, n_rungs, directions, eta)
    if promo is not None:
        source, rung = promo
        study.enqueue_trial(source.params, user_attrs={"rung": rung, "promoted_from": source.number})
        return study.ask()
    if sum(counts_toward_budget(t) and rung_of(t) == 0 for t in trials) >= budget:
        return None
    trial = study.ask()
    if "rung" not in trial.user_attrs:
        trial.set_user_attr("rung", 0)
    return trial


def top_rung_front(trials: Sequence[FrozenTrial], n_rungs: int, directions: Sequence[str],
                   front: Any) -> list[FrozenTrial]:
    """The Pareto front among the top-rung trials (``front(trials, directions)`` computes it)."""
    return front([t for t in trials if rung_of(t) == n_rungs - 1], directions)


def cost_summary(trials: Sequence[FrozenTrial], rungs: Sequence[int], seeds: int = 1) -> dict:
    """Training epochs spent per rung vs. training every architecture trained at rung 0 at the top
    rung instead. Trials that copied a twin's results or were infeasible trained nothing."""
    spent = {r: 0 for r in rungs}
    count = {r: 0 for r in rungs}
    n0 = 0
    for t in trials:
        if t.state != TrialState.COMPLETE or rung_of(t) >= len(rungs):
            continue
        epochs = rungs[rung_of(t)]
        count[epochs] += 1
        if "duplicate_of" not in t.user_attrs and "infeasible" not in t.user_attrs:
            spent[epochs] += epochs * seeds
            n0 += rung_of(t) == 0
    total = sum(spent.values())
    full = n0 * rungs[-1] * seeds
    return {"trials_per_rung": count, "epochs_per_rung": spent, "epochs": total, "epochs_if_all_top": full,
            "saved": 1.0 - total / full if full else 0.0}
