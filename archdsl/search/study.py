"""Optuna study management: storage, sampler, pruner, the budget, and the worker loop.

**Budget.** ``budget`` is the total number of trials the study should hold, counted as: COMPLETE +
PRUNED + FAIL trials that failed on their own (``user_attrs['fail_reason']``: an exception, a NaN
loss, out of memory, an invalid spec) + trials RUNNING/WAITING in some worker. Trials interrupted by
Ctrl-C or left stale by a worker that died do not count and are run again. Running the same command
again therefore resumes and only adds what is missing; a worker returns only when no trial of the
study is RUNNING or WAITING any more (it waits for other workers' trials).

**Several workers.** Each worker takes a study-wide lock around "count, then ``ask()``, then record
this worker in the trial" (a PostgreSQL advisory lock / MySQL ``GET_LOCK`` for RDB servers, a file
lock for SQLite and journal files), so N workers together create exactly ``budget`` trials. A
worker that dies leaves a RUNNING trial: a worker on the same host finds it at once (the process is
gone, :mod:`archdsl.search.workers`); for other hosts, the RDB heartbeat fails it after its grace
period. Either way it is marked FAIL (stale) and its parameters are queued again (:func:`retry_trial`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
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

from archdsl.search.faults import (
    SignalSafeJournalStorage,
    SignalSafeRDBStorage,
    deferred_interrupts,
    is_storage_error,
    storage_errors,
    where,
)
from archdsl.search.objective import constraints_func, fail_reason
from archdsl.search.workers import RUNS, WORKER_ATTR, describe_worker, new_run, worker_alive, worker_info

__all__ = ["normalize_url", "make_storage", "make_sampler", "make_pruner", "open_study", "budget_count", "study_lock",
           "run_workers_loop", "LoopResult", "HEARTBEAT_S", "reap_dead_workers", "retry_trial", "claim_worker_number",
           "check_study_record"]

HEARTBEAT_S = 20          # RDB heartbeat interval; a RUNNING trial silent for 4x this is stale
CONNECT_TIMEOUT_S = 15    # a database server that does not answer within this is an error
MAX_RETRIES = 2           # parameters whose worker died are run again at most this often
WAIT_POLL_S = 2.0         # how often a worker that waits for other workers' trials looks again
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
    with heartbeat; a stale trial's parameters are queued again) or ``journal:FILE`` (a journal file).
    A storage that cannot be opened raises :class:`StorageError` (one line; nothing is changed)."""
    with storage_errors(url, doing="cannot open the study storage"):
        if _is_journal(url):
            path = url[len("journal:"):] if url.startswith("journal:") else url
            from optuna.storages.journal import JournalFileBackend

            return SignalSafeJournalStorage(JournalFileBackend(path))
        url = normalize_url(url)
        if url.startswith("sqlite"):
            engine_kwargs: dict = {"connect_args": {"timeout": 120}}
        else:   # a server that does not answer must not hang the worker (libpq / MySQL drivers)
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in
                    inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback")
        with _schema_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)   # heartbeat_interval
            return SignalSafeRDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=4 * HEARTBEAT_S, **{callback: retry_trial})


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Workers starting together on an empty database would race to create Optuna's tables (and
    PostgreSQL's enum types; SQLite's ``alembic_version`` row): a server-side lock, or a file lock
    next to the SQLite file, makes the first one create them, the others wait."""
    path = _local_file(url)
    if path is not None:
        with _file_lock(f"{path}.lock"):
            yield
        return
    if not url.startswith(("postgresql", "postgres", "mysql")):
        yield
        return
    import sqlalchemy
    from sqlalchemy import text

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
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


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial whose worker died (failed by the heartbeat or by :func:`reap_dead_workers`): queue its
    parameters again as a WAITING trial (Optuna's ``RetryHeartbeatStaleTrialCallback`` convention:
    system attrs ``failed_trial`` / ``retry_history``; the half-written user attrs are not copied).
    Parameters whose workers died ``MAX_RETRIES + 1`` times are recorded FAIL with a ``fail_reason``
    instead (a model that gets its worker killed, e.g. by the kernel's out-of-memory killer)."""
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    retried = len(history) <= MAX_RETRIES
    user_attrs = {} if retried else {"fail_reason": f"its worker died {len(history)} times running these "
                                                    f"parameters (killed by the OS? out of memory?)"}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING if retried else TrialState.FAIL, params=trial.params,
        distributions=trial.distributions, user_attrs=user_attrs,
        system_attrs={"failed_trial": history[0], "retry_history": history}))


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


def claim_worker_number(study: optuna.Study, storage: Any, url: str) -> int:
    """This worker's number in the study: 0 for the first process that ever ran it, then 1, 2, ...
    (a resumed run is a new worker). Each number gives the sampler another seed, so workers started
    together, and a study resumed with the same ``--seed``, do not propose the same points."""
    key = "archdsl:workers"
    with study_lock(storage, url, study.study_name):
        n = int(study._storage.get_study_system_attrs(study._study_id).get(key, 0))
        study._storage.set_study_system_attr(study._study_id, key, n + 1)
    return n


def check_study_record(study: optuna.Study, record: dict[str, Any], *, storage: Any, url: str) -> None:
    """Store ``record`` (objectives, data set, recipe, space hash: JSON data) in the study's user attrs
    the first time; when a resumed study holds other values, refuse (``ValueError``) saying what
    differs and how to start a new study, so one Pareto front never mixes two setups."""
    record = json.loads(json.dumps(record))          # tuples -> lists: compare as stored
    with study_lock(storage, url, study.study_name):
        have = study._storage.get_study_user_attrs(study._study_id)
        diffs = [d for k, v in record.items() if k in have for d in _differences(k, have[k], v)]
        if diffs:
            raise ValueError(f"study '{study.study_name}' in {where(url)} was run with " + "; ".join(diffs)
                             + ": resuming would mix both in one Pareto front; pass --study NEW_NAME (or "
                               "another --out) to start a new study, or rerun with the study's settings")
        for k, v in record.items():
            if k not in have:
                study._storage.set_study_user_attr(study._study_id, k, v)


def _differences(key: str, old: Any, new: Any) -> list[str]:
    """``["recipe.epochs 1 (this run: 2)"]``: dicts compared field by field."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [f"{key}.{k} {old.get(k)} (this run: {new.get(k)})" for k in {**old, **new}
                if old.get(k) != new.get(k)]
    return [] if old == new else [f"{key} {old} (this run: {new})"]


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
    with _file_lock(f"{path}.{abs(key) % 10**8}.lock"):
        yield


def _local_file(url: str) -> str | None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?")[0]
        return None if path in ("", ":memory:") or path.startswith("file:") else path
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
                     log: Callable[[str], None] = lambda s: None,
                     ask: Callable[[optuna.Study], optuna.Trial | None] | None = None) -> LoopResult:
    """Ask/run/tell until the study holds ``budget`` counted trials (or ``timeout`` seconds passed),
    then wait until no other worker's trial is RUNNING, so that the budget is met by finished trials.

    ``ask(study)``, called under the study lock, replaces "count, then ``study.ask()``": it returns
    the next trial or None when this worker is done (successive halving: ``halving.ask_next``).

    Failures are recorded (``fail_reason``) and the loop goes on; ``KeyboardInterrupt`` marks the
    current trial FAIL (``interrupted``), stops the loop and is re-raised after ``on_trial_end``. A
    storage fault (disk full, database gone) is re-raised as is: the trial stays RUNNING, and the next
    worker on this host runs it again.
    """
    res = LoopResult()
    start = time.monotonic()
    heartbeat = hasattr(storage, "record_heartbeat") and url and not _is_journal(url)
    run, shown = new_run(), None
    try:
        while True:
            if timeout is not None and time.monotonic() - start >= timeout:
                res.stopped_by = "timeout"
                break
            if heartbeat:
                optuna.storages.fail_stale_trials(study)
            trial = _next_trial(study, storage=storage, url=url, budget=budget, run=run, log=log, ask=ask)
            if trial is None:
                others = study.get_trials(deepcopy=False, states=_IN_FLIGHT)
                if not others:
                    break
                if shown != [t.number for t in others]:
                    shown = [t.number for t in others]
                    log(_waiting_message(others, heartbeat))
                time.sleep(WAIT_POLL_S)
                continue
            frozen = _run_trial(study, trial, storage, objective, res, log)
            res.ran.append(trial.number)
            if on_trial_end:
                on_trial_end(frozen)
            if res.interrupted:
                raise KeyboardInterrupt
    finally:
        RUNS.discard(run)
    return res


def _next_trial(study: optuna.Study, *, storage: Any, url: str, budget: int, run: str,
                log: Callable[[str], None], ask: Callable[[optuna.Study], optuna.Trial | None] | None = None
                ) -> optuna.Trial | None:
    """Under the study lock: fail and queue again the trials of dead workers of this host, then ask
    a trial (a queued one first) and record this worker in it; None when the budget is met.
    ``ask(study)`` replaces "count, then ``study.ask()``" (successive halving: ``halving.ask_next``)."""
    with study_lock(storage, url, study.study_name):
        reap_dead_workers(study, log)
        if ask is not None:
            trial = ask(study)
            if trial is None:
                return None
        else:
            trials = study.get_trials(deepcopy=False)
            queued = any(t.state == TrialState.WAITING for t in trials)
            if sum(counts_toward_budget(t) for t in trials) >= budget and not queued:
                return None
            trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker_info(run))
        backend = _backend(storage)
        if getattr(backend, "get_heartbeat_interval", lambda: None)() is not None:
            backend.record_heartbeat(trial._trial_id)
        return trial


def _run_trial(study: optuna.Study, trial: optuna.Trial, storage: Any,
               objective: Callable[[optuna.Trial], list[float]], res: LoopResult,
               log: Callable[[str], None]) -> optuna.trial.FrozenTrial:
    """Run the objective and tell the result (Ctrl-C held off while telling)."""
    try:
        with _Heartbeat(_backend(storage), trial._trial_id):
            values = objective(trial)
    except optuna.TrialPruned:
        with deferred_interrupts():
            return study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        res.interrupted, res.stopped_by = True, "interrupt"
        with deferred_interrupts():
            trial.set_user_attr("interrupted", True)
            return study.tell(trial, state=TrialState.FAIL)
    except Exception as e:   # noqa: BLE001 -- a failing trial must not stop the study
        if is_storage_error(e):
            raise
        reason = fail_reason(e)
        with deferred_interrupts():
            trial.set_user_attr("fail_reason", reason)
            frozen = study.tell(trial, state=TrialState.FAIL)
        res.failed.append(trial.number)
        log(f"trial {trial.number} failed: {reason}")
        return frozen
    with deferred_interrupts():
        if all(math.isfinite(v) for v in values):
            return study.tell(trial, values)
        trial.set_user_attr("fail_reason", f"non-finite objective values {values}")
        frozen = study.tell(trial, state=TrialState.FAIL)
    res.failed.append(trial.number)
    return frozen


def reap_dead_workers(study: optuna.Study, log: Callable[[str], None] = lambda s: None) -> list[int]:
    """Fail the RUNNING trials whose worker process on this host is gone (``stale_reason`` says so;
    they do not count toward the budget) and queue their parameters again (:func:`retry_trial`).
    Call under :func:`study_lock`: a worker asks a trial and records itself in it under that lock,
    so a RUNNING trial that names no worker here was left by one killed in between, and is failed
    too. Returns the numbers of the trials failed."""
    storage, reaped = study._storage, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        info = t.system_attrs.get(WORKER_ATTR)
        if info is not None and worker_alive(info) is not False:
            continue
        who = describe_worker(info)
        try:
            storage.set_trial_user_attr(t._trial_id, "stale_reason", f"{who} died")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue                                  # it finished meanwhile
        retry_trial(study, storage.get_trial(t._trial_id))
        reaped.append(t.number)
        log(f"trial {t.number} was left RUNNING by {who}, which is gone: marked FAIL (stale) and queued "
            f"to run again")
    return reaped


def _waiting_message(others: list[optuna.trial.FrozenTrial], heartbeat: bool) -> str:
    """What a worker whose budget is met waits for before it exits."""
    parts = []
    for t in others:
        info = t.system_attrs.get(WORKER_ATTR)
        if t.state == TrialState.WAITING:
            parts.append(f"trial {t.number} (queued)")
        elif worker_alive(info):
            parts.append(f"trial {t.number} (running in {describe_worker(info)} on this host)")
        elif heartbeat:
            parts.append(f"trial {t.number} (running in {describe_worker(info)}; failed and run again here "
                         f"if its heartbeat stops for {4 * HEARTBEAT_S} s)")
        else:
            parts.append(f"trial {t.number} (running in {describe_worker(info)}; this storage has no "
                         f"heartbeat: if that worker is gone, stop this one with Ctrl-C)")
    return "budget reached; waiting for other workers' trials to finish: " + ", ".join(parts)


def local_storage_url(out_dir: str | os.PathLike) -> str:
    """The default storage: ``sqlite:///OUT/study.db`` (absolute path)."""
    return f"sqlite:///{Path(out_dir).resolve() / 'study.db'}"
