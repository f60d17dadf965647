"""Which worker runs a trial and whether it is alive; retries of a dead worker's trial; waiting."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from archdsl.search import study as st
from archdsl.search import workers


def test_worker_alive_tells_dead_reused_and_foreign_processes():
    me = workers.worker_info(workers.new_run())
    assert workers.worker_alive(me) is True
    assert workers.worker_alive({**me, "run": "finished-run"}) is False            # this pid, another run
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    info = {**me, "pid": child.pid, "started": workers._started(child.pid)}
    child.wait()
    assert workers.worker_alive(info) is False                                   # gone
    parent = {**me, "pid": os.getppid(), "started": workers._started(os.getppid())}
    assert workers.worker_alive(parent) is True
    assert workers.worker_alive({**parent, "started": "other-boot:1"}) is False  # the pid was reused
    assert workers.worker_alive({**me, "host": socket.gethostname() + "-elsewhere"}) is None
    assert workers.worker_alive(None) is None


def _study(tmp_path):
    storage = st.make_storage(st.local_storage_url(tmp_path))
    return storage, optuna.create_study(storage=storage, study_name="s")


def test_a_dead_trial_is_retried_twice_then_recorded_as_failed(tmp_path):
    storage, study = _study(tmp_path)
    dist = {"x": optuna.distributions.IntDistribution(0, 9)}
    for _attempt in range(3):
        trial = study.ask(dist)
        study._storage.set_trial_system_attr(trial._trial_id, workers.WORKER_ATTR,
                                             {"host": socket.gethostname(), "pid": os.getpid(), "run": "gone"})
        with st.study_lock(storage, st.local_storage_url(tmp_path), "s"):
            assert st.reap_dead_workers(study) == [trial.number]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 4
    assert [t.params["x"] for t in trials] == [trials[0].params["x"]] * 4        # the same point each time
    assert [t.system_attrs.get("retry_history") for t in trials] == [None, [0], [0, 1], [0, 1, 2]]
    assert all(t.user_attrs["stale_reason"] == f"worker {socket.gethostname()}:{os.getpid()} died"
               for t in trials[:3])
    assert trials[3].user_attrs["fail_reason"].startswith("its worker died 3 times running these parameters")
    assert st.budget_count(study) == 1                                           # only the last one counts


def test_a_worker_whose_budget_is_met_waits_for_other_workers_trials(tmp_path):
    storage, study = _study(tmp_path)
    trial = study.ask()
    other = {"host": "other-host", "pid": 4242, "started": "b:1", "run": "r"}
    study._storage.set_trial_system_attr(trial._trial_id, workers.WORKER_ATTR, other)
    logs: list[str] = []
    res = st.run_workers_loop(study, storage=storage, url=st.local_storage_url(tmp_path), budget=1,
                              objective=lambda t: [0.0], timeout=0.3, log=logs.append)
    assert res.ran == [] and res.stopped_by == "timeout"
    assert logs == ["budget reached; waiting for other workers' trials to finish: trial 0 (running in worker "
                    "other-host:4242; failed and run again here if its heartbeat stops for 80 s)"]
