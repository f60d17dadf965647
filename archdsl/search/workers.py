"""Which process runs a trial, and whether it is still alive.

Each worker stores ``{"host", "pid", "started", "run"}`` in the system attrs of the trial it runs
(``started``: the kernel's boot id and the process start time in clock ticks, from
``/proc/PID/stat``; ``run``: a token of this ``run_search`` call). A RUNNING trial whose worker ran on
this host and whose process is gone (or whose pid now belongs to another process, or is a zombie, or
is this very process but no longer the run that asked it) is abandoned: the next worker on the host
fails it and runs it again at once. A worker on another host cannot be checked from here; Optuna's
heartbeat decides for those trials.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

__all__ = ["WORKER_ATTR", "worker_info", "new_run", "worker_alive", "describe_worker", "RUNS"]

WORKER_ATTR = "archdsl:worker"     # trial system attr
RUNS: set[str] = set()             # run tokens of the search loops running in this process now


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks since boot)`` of ``pid`` (fields 3 and 22 of
    ``/proc/PID/stat``), or None when there is no such process or no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()     # the command name may hold spaces and ')'
    return fields[0], fields[19]


def _started(pid: int) -> str | None:
    st = _proc_stat(pid)
    return f"{_boot_id()}:{st[1]}" if st else None


def worker_info(run: str) -> dict:
    """This process's identity for the trial it is about to run (``run``: see :func:`new_run`)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid()), "run": run}


def new_run() -> str:
    token = uuid.uuid4().hex
    RUNS.add(token)
    return token


def worker_alive(info: Any) -> bool | None:
    """True / False for a worker of this host; None when it ran elsewhere (or ``info`` is unusable)."""
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if not isinstance(pid, int):
        return None
    if pid == os.getpid():
        return info.get("run") in RUNS
    if info.get("started"):
        st = _proc_stat(pid)
        return st is not None and st[0] not in ("Z", "X") and f"{_boot_id()}:{st[1]}" == info["started"]
    try:                                             # no /proc here: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_worker(info: Any) -> str:
    if not isinstance(info, dict):
        return "a worker that did not record itself"
    return f"worker {info.get('host')}:{info.get('pid')}"
