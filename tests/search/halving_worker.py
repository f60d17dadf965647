"""A successive-halving worker with a cheap deterministic objective (for the two-worker test):
    python halving_worker.py SQLITE_URL STUDY BUDGET SEED
Values: accuracy = x / 100 + 0.01 * rung, throughput = 100 - x + y (two objectives that conflict)."""
from __future__ import annotations

import sys
import time

import optuna

from archdsl.search import halving
from archdsl.search import study as st


def objective(trial: optuna.Trial) -> list[float]:
    x, y = trial.suggest_int("x", 0, 99), trial.suggest_int("y", 0, 9)
    time.sleep(0.02)                          # let the two workers interleave
    return [x / 100 + 0.01 * int(trial.user_attrs.get("rung", 0)), float(100 - x + y)]


def main() -> None:
    url, name, budget, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = st.make_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed), load_if_exists=True)
    st.run_workers_loop(study, storage=storage, url=url, budget=budget, objective=objective,
                        ask=lambda s: halving.ask_next(s, budget=budget, n_rungs=3, eta=3))


if __name__ == "__main__":
    main()
