"""Worker faults during a search: kill -9 mid-trial, a burst of Ctrl-C's, two workers started together.

Each starts real `archdsl search` processes on the tiny space; the study must end at exactly
--budget COMPLETE trials with nothing left RUNNING, no finished trial lost, no architecture trained
twice. The PostgreSQL case runs where ARCHDSL_TEST_POSTGRES_URL is set (.ci/postgres.sh sets it).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from archdsl.search.runner import run_search
from archdsl.search.study import budget_count, local_storage_url, normalize_url
from archdsl.search.workers import WORKER_ATTR

SPACE = Path(__file__).parent / "tiny_space.yaml"
PG_URL = os.environ.get("ARCHDSL_TEST_POSTGRES_URL")


def _worker(out: Path, budget: int, *, storage: str | None = None, study: str = "tiny_space",
            epochs: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "archdsl", "search", "--space", str(SPACE), "--budget", str(budget),
           "--out", str(out), "--study", study, "--epochs", str(epochs), "--device", "cpu", "--no-progress"]
    if storage:
        cmd += ["--storage", storage]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _running(url: str, study: str) -> set[int]:
    """Numbers of the RUNNING trials that name their worker and have sampled their spec, read straight from the database (no
    Optuna: cheap to poll)."""
    engine = sqlalchemy.create_engine(normalize_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT t.number FROM trials t JOIN studies s ON t.study_id = s.study_id JOIN "
                "trial_system_attributes a ON a.trial_id = t.trial_id WHERE s.study_name = :n AND "
                "t.state = 'RUNNING' AND a.key = :k AND EXISTS (SELECT 1 FROM trial_user_attributes u WHERE "
                "u.trial_id = t.trial_id AND u.key = 'spec')"), {"n": study, "k": WORKER_ATTR}).fetchall()
        return {int(n) for (n,) in rows}
    except sqlalchemy.exc.ProgrammingError:          # PostgreSQL: the worker has not created the tables yet
        return set()
    except sqlalchemy.exc.OperationalError:          # SQLite: the same
        return set()
    finally:
        engine.dispose()


def _wait_running(proc: subprocess.Popen, url: str, study: str, number: int, limit: float = 120) -> None:
    """Poll until trial ``number`` is RUNNING (earlier ones finished)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if number in _running(url, study):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"trial {number} never ran")


def _check_end(study: optuna.Study, budget: int) -> None:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == budget and budget_count(study) == budget, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG_URL, reason="ARCHDSL_TEST_POSTGRES_URL is unset (.ci/postgres.sh sets it)"))])
def test_kill_9_mid_trial_then_rerun_ends_at_exactly_the_budget(tmp_path, backend):
    study_name = f"kill9_{uuid.uuid4().hex[:8]}"
    url = PG_URL if backend == "postgres" else local_storage_url(tmp_path)
    proc = _worker(tmp_path, 2, storage=PG_URL if backend == "postgres" else None, study=study_name, epochs=2)
    _wait_running(proc, url, study_name, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name=study_name, storage=normalize_url(url))
    done = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}
    killed = next(t for t in study.trials if t.state == TrialState.RUNNING)
    assert killed.system_attrs[WORKER_ATTR]["pid"] == proc.pid and 0 in done

    logs: list[str] = []
    s = run_search(space=str(SPACE), budget=2, storage=url if backend == "postgres" else None, study=study_name,
                   out_dir=str(tmp_path), epochs=2, progress=False, log=logs.append)
    study = optuna.load_study(study_name=study_name, storage=normalize_url(url))
    _check_end(study, 2)
    dead = study.trials[killed.number]
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs
    assert dead.user_attrs["stale_reason"] == f"worker {socket.gethostname()}:{proc.pid} died"
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.number in s["loop"].ran
    assert {n: study.trials[n].values for n in done} == done          # no finished trial lost
    # found dead at once by its pid (not after the heartbeat's 80 s grace: nothing was waited for)
    assert any(f"trial {killed.number} was left RUNNING by worker" in line for line in logs)
    assert not any("waiting" in line for line in logs)


def test_a_burst_of_ctrl_c_then_rerun_ends_at_exactly_the_budget(tmp_path):
    url = local_storage_url(tmp_path)
    proc = _worker(tmp_path, 2, epochs=2)
    _wait_running(proc, url, "tiny_space", 1)
    for gap in (0.01, 0.1, 0.3):    # inside the tell of the interrupted trial, the results, the exit
        proc.send_signal(signal.SIGINT)
        time.sleep(gap)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    run_search(space=str(SPACE), budget=2, out_dir=str(tmp_path), epochs=2, progress=False, log=lambda s: None)
    _check_end(optuna.load_study(study_name="tiny_space", storage=url), 2)


def test_two_workers_started_together_on_one_sqlite_out(tmp_path):
    procs = [_worker(tmp_path, 4) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    url = local_storage_url(tmp_path)
    study = optuna.load_study(study_name="tiny_space", storage=url)
    _check_end(study, 4)
    assert len(study.trials) == 4
    assert study._storage.get_study_system_attrs(study._study_id)["archdsl:workers"] == 2
    trained = [t.user_attrs["arch"] for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == len(set(trained))                         # no architecture trained twice
    for t in study.trials:
        if "duplicate_of" in t.user_attrs:
            assert study.trials[t.user_attrs["duplicate_of"]].user_attrs["arch"] == t.user_attrs["arch"]
