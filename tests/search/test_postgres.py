"""Two `archdsl search` worker processes share one study on a real PostgreSQL server.

.ci/postgres.sh starts the server and exports ARCHDSL_TEST_POSTGRES_URL; without it the test is skipped.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

URL = os.environ.get("ARCHDSL_TEST_POSTGRES_URL")
SPACE = Path(__file__).parent / "tiny_space.yaml"

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not URL, reason="ARCHDSL_TEST_POSTGRES_URL is unset (.ci/postgres.sh sets it)")]


def _worker(study: str, out: Path, seed: int, budget: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "archdsl", "search", "--space", str(SPACE), "--budget", str(budget),
           "--storage", URL, "--study", study, "--epochs", "1", "--device", "cpu", "--out", str(out),
           "--seed", str(seed), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_workers_fill_the_budget_exactly(tmp_path):
    import optuna

    from archdsl.search.study import budget_count, normalize_url

    study_name = f"two_workers_{uuid.uuid4().hex[:8]}"
    budget = 4
    procs = [_worker(study_name, tmp_path / f"w{i}", seed=i, budget=budget) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]

    study = optuna.load_study(study_name=study_name, storage=normalize_url(URL))
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(budget))            # exactly N, no duplicate, none lost
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert budget_count(study) == budget
    workers = {t.user_attrs["worker"] for t in trials}
    assert 1 <= len(workers) <= 2
    for i in range(2):                                        # each worker exported the shared study
        assert (tmp_path / f"w{i}" / "trials.csv").read_text().count("\n") in range(2, budget + 2)

    # another worker on the full study adds nothing (in-process: no interpreter start-up)
    from archdsl.search.runner import run_search

    summary = run_search(space=str(SPACE), budget=budget, storage=URL, study=study_name, epochs=1,
                         device="cpu", out_dir=str(tmp_path / "w2"), progress=False, log=lambda s: None)
    assert summary["loop"].ran == []
    assert len(optuna.load_study(study_name=study_name, storage=normalize_url(URL)).trials) == budget
