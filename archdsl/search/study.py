"""Optuna study management: storage, sampler, pruner, the budget, and the worker loop.

**Budget.** ``budget`` is the total number of trials the study should hold, counted as: COMPLETE +
PRUNED + FAIL trials that failed on their own (``user_attrs['fail_reason']``: an exception, a NaN
loss, out of memory, an invalid spec) + trials RUNNING/WAITING in some worker. Trials interrupted by
Ctrl-C or left stale by a worker that died (failed by the heartbeat check) do not count and are run
again. Running the same command again therefore resumes and only adds what is missing.

**Several workers.** Each worker takes a study-wide lock around "count, then ``ask()``" (a
PostgreSQL advisory lock / MySQL ``GET_LOCK`` for RDB servers, a file lock for SQLite and journal
files), so N workers together create exactly ``budget`` trials. RDB storages get a heartbeat: a
worker that dies leaves a RUNNING trial that the next worker marks FAIL (stale) and replaces.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from archdsl.search.objective import constraints_func, fail_reason

__all__ = ["normalize_url", "make_storage", "make_sampler", "make_pruner", "open_study", "budget_count", "study_lock",
           "run_workers_loop", "LoopResult", "HEARTBEAT_S"]

HEARTBEAT_S = 20          # RDB heartbeat interval; a RUNNING trial silent for 4x this is stale
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)


def _is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def normalize_url(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's default driver (psycopg 3 in SQLAlchemy 2.1); when only
    psycopg2 is installed (``pip install archdsl[postgres]``), name it explicitly."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + url[len(prefix):]
            return "postgresql://" + url[len(prefix):]
    return url


def make_storage(url: str) -> Any:
    """An Optuna storage for ``url``: ``sqlite:///FILE``, ``postgresql://...``, ``mysql://...`` (RDB,
    with heartbeat) or ``journal:FILE`` (a journal file)."""
    if _is_journal(url):
        path = url[len("journal:"):] if url.startswith("journal:") else url
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(path))
    url = normalize_url(url)
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with _schema_lock(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)   # heartbeat_interval
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=4 * HEARTBEAT_S)


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Workers starting together on an empty database would race to create Optuna's tables (and
    PostgreSQL's enum types); a server-side lock makes the first one create them, the others wait."""
    if not url.startswith(("postgresql", "postgres", "mysql")):
        yield
        return
    import sqlalchemy
    from sqlalchemy import text

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            pg = url.startswith("postgres")
            conn.execute(text("SELECT pg_advisory_lock(7243011)" if pg else "SELECT GET_LOCK('archdsl_schema', -1)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7243011)" if pg else
                                  "SELECT RELEASE_LOCK('archdsl_schema')"))
    finally:
        engine.dispose()


def make_sampler(name: str, *, seed: int | None, n_objectives: int, n_constraints: int,
                 budget: int) -> optuna.samplers.BaseSampler:
    """``tpe`` (multivariate, grouped for conditional spaces, constant liar for parallel workers) or
    ``nsga2``; both get a ``constraints_func`` reading the trial's stored constraint values."""
    # Optuna >= 5 reads constraints set with Trial.set_constraint (constraints_func is deprecated)
    cf = constraints_func(n_constraints) if n_constraints and not hasattr(optuna.Trial, "set_constraint") else None
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=min(10, max(2, budget // 5)),
                                              constraints_func=cf)
    if name == "nsga2":
        pop = max(4, min(50, budget // 5))   # several generations fit in a small budget
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop, constraints_func=cf)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler '{name}'; expected tpe, nsga2 or random")


def make_pruner(name: str | None, *, epochs: int) -> optuna.pruners.BasePruner:
    """``median`` (after 3 complete trials, from epoch 1) or ``hyperband`` (resource = epochs); ``none``."""
    if name in (None, "none"):
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs), reduction_factor=3)
    raise ValueError(f"unknown pruner '{name}'; expected median, hyperband or none")


def open_study(storage: Any, name: str, directions: list[str], sampler: Any, pruner: Any) -> optuna.Study:
    """Create the study or load it (``load_if_exists``); the directions must match an existing study."""
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != list(directions):
        raise ValueError(f"study '{name}' exists with directions {have}, but this search asks for "
                         f"{list(directions)}; use another --study name")
    return study


def counts_toward_budget(t: optuna.trial.FrozenTrial) -> bool:
    if t.state in _FINISHED or t.state in _IN_FLIGHT:
        return True
    return t.state == TrialState.FAIL and "fail_reason" in t.user_attrs


def budget_count(study: optuna.Study) -> int:
    """How many trials count toward ``--budget`` (see the module docstring)."""
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def _backend(storage: Any) -> Any:
    return getattr(storage, "_backend", storage)     # optuna wraps RDBStorage in a cache


@contextlib.contextmanager
def study_lock(storage: Any, url: str, study_name: str) -> Iterator[None]:
    """A lock shared by every worker of one study (see the module docstring)."""
    key = int.from_bytes(hashlib.sha1(f"archdsl:{study_name}".encode()).digest()[:8], "big", signed=True)
    if url.startswith(("postgresql", "postgres")):
        from sqlalchemy import text

        engine = _backend(storage).engine
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    if url.startswith("mysql"):
        from sqlalchemy import text

        engine = _backend(storage).engine
        with engine.connect() as conn:
            conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": f"archdsl_{key}"})
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": f"archdsl_{key}"})
        return
    path = _local_file(url)
    if path is None:
        yield                                         # in-memory or unknown: one process only
        return
    with open(f"{path}.{abs(key) % 10**8}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _local_file(url: str) -> str | None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return None if path in ("", ":memory:") else path
    if _is_journal(url):
        return url[len("journal:"):] if url.startswith("journal:") else url
    return None


class _Heartbeat:
    """Records a heartbeat for a running trial every ``HEARTBEAT_S`` seconds (RDB storages)."""

    def __init__(self, storage: Any, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.enabled = hasattr(storage, "record_heartbeat") and getattr(storage, "get_heartbeat_interval",
                                                                         lambda: None)() is not None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:   # a transient database error must not kill the trial
                pass

    def __enter__(self) -> "_Heartbeat":
        if self.enabled:
            self.storage.record_heartbeat(self.trial_id)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join(timeout=5)


@dataclass
class LoopResult:
    ran: list[int] = field(default_factory=list)       # trial numbers this worker ran
    failed: list[int] = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str = "budget"                         # budget | timeout | interrupt


def run_workers_loop(study: optuna.Study, *, storage: Any, url: str, budget: int,
                     objective: Callable[[optuna.Trial], list[float]],
                     timeout: float | None = None,
                     on_trial_end: Callable[[optuna.trial.FrozenTrial], None] | None = None,
                     log: Callable[[str], None] = lambda s: None) -> LoopResult:
    """Ask/run/tell until the study holds ``budget`` counted trials (or ``timeout`` seconds passed).

    Failures are recorded (``fail_reason``) and the loop goes on; ``KeyboardInterrupt`` marks the
    current trial FAIL (``interrupted``), stops the loop and is re-raised after ``on_trial_end``.
    """
    res = LoopResult()
    start = time.monotonic()
    heartbeat = hasattr(storage, "record_heartbeat") and url and not _is_journal(url)
    while True:
        if timeout is not None and time.monotonic() - start >= timeout:
            res.stopped_by = "timeout"
            break
        if heartbeat:
            optuna.storages.fail_stale_trials(study)
        with study_lock(storage, url, study.study_name):
            if budget_count(study) >= budget:
                break
            trial = study.ask()
        try:
            with _Heartbeat(_backend(storage), trial._trial_id):
                values = objective(trial)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            frozen = study.tell(trial, state=TrialState.FAIL)
            res.interrupted, res.stopped_by = True, "interrupt"
            if on_trial_end:
                on_trial_end(frozen)
            raise
        except Exception as e:   # noqa: BLE001 -- a failing trial must not stop the study
            reason = fail_reason(e)
            trial.set_user_attr("fail_reason", reason)
            frozen = study.tell(trial, state=TrialState.FAIL)
            res.failed.append(trial.number)
            log(f"trial {trial.number} failed: {reason}")
        else:
            if all(math.isfinite(v) for v in values):
                frozen = study.tell(trial, values)
            else:
                trial.set_user_attr("fail_reason", f"non-finite objective values {values}")
                frozen = study.tell(trial, state=TrialState.FAIL)
                res.failed.append(trial.number)
        res.ran.append(trial.number)
        if on_trial_end:
            on_trial_end(frozen)
    return res


def local_storage_url(out_dir: str | os.PathLike) -> str:
    """The default storage: ``sqlite:///OUT/study.db`` (absolute path)."""
    return f"sqlite:///{Path(out_dir).resolve() / 'study.db'}"
