"""The hostile-input suite: every case of hostile_cases.py through the real CLI (``python -m
archdsl``) in a subprocess with a time limit and an address-space limit. Each must exit 0 or 2 as
the case says, print no traceback, stay under 20 s, print the expected message (control characters
escaped), and leave no marker from a plugin module unless the case opted in.

"Under 20 s" is enforced as 20 s of CPU time (``RLIMIT_CPU``: the kernel stops a case that computes
longer), which a machine shared with other jobs does not distort; a wall-clock timeout of
``HANG_S`` catches a case that blocks without computing (a FIFO read). The cases run in a thread
pool (each is a subprocess; most stop at spec loading, which does not import torch).
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostile_cases import DIR, FIFO, MARKER, Case, all_cases

TIME_LIMIT_S = 20  # CPU seconds per case
HANG_S = 300  # wall seconds: only a case that blocks reaches this, even on a loaded machine
ADDRESS_SPACE = 6 << 30  # torch needs ~2-3 GiB of address space to import; a runaway load needs more
WORKERS = 4


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (TIME_LIMIT_S, TIME_LIMIT_S + 1))


def _make(folder: Path, case: Case) -> None:
    for name, value in case.files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if value == FIFO:
            os.mkfifo(p)
        elif value == DIR:
            p.mkdir()
        elif isinstance(value, tuple):
            os.symlink(value[1], p)
        elif isinstance(value, bytes):
            p.write_bytes(value)
        else:
            p.write_text(value.replace("{d}", str(folder)), encoding="utf-8")


def _run(case: Case, root: Path) -> tuple[Case, str]:
    """Run one case; returns ``(case, problem)`` with an empty problem when it kept every promise."""
    folder = root / case.id
    folder.mkdir()
    _make(folder, case)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHDSL_")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in (
        case.env.get("PYTHONPATH", "").replace("{d}", str(folder)), os.environ.get("PYTHONPATH", "")) if p)})
    env.update({k: v.replace("{d}", str(folder)) for k, v in case.env.items() if k != "PYTHONPATH"})
    argv = [a.replace("{d}", str(folder)) for a in case.argv]
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "archdsl", *argv], cwd=folder, env=env, capture_output=True,
                              timeout=HANG_S, preexec_fn=_limit_child, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return case, f"blocked: still running after {HANG_S} s"
    took = time.monotonic() - t0
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    text = out + err
    problems = []
    if proc.returncode not in case.expect:
        problems.append(f"exit {proc.returncode}, expected {case.expect}")
    if "Traceback" in text:
        problems.append("a traceback")
    if case.err is not None and case.err not in text:
        problems.append(f"no {case.err!r} in the output")
    if "\x1b" in text or "\x07" in text:
        problems.append("a raw control character in the output")
    if (folder / MARKER).exists() != case.marker:
        problems.append("the plugin ran without an opt-in" if not case.marker else "the opted-in plugin did not run")
    if case.out_empty and out.strip():
        problems.append(f"stdout not empty: {out[:80]!r}")
    # (torch's own log lines, e.g. a cpp_extension CUDA_HOME warning, are not ours to count)
    if proc.returncode == 2 and len([ln for ln in err.splitlines() if ln.startswith("archdsl ")]) != 1:
        problems.append("the error is not one line")
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        problems.append(f"used more than {TIME_LIMIT_S} s of CPU (wall {took:.1f} s)")
    return case, "; ".join(problems) + (f" -- output: {text[-300:]!r}" if problems else "")


def test_at_least_80_distinct_cases():
    cases = all_cases()
    assert len(cases) >= 80
    assert len({c.id for c in cases}) == len(cases)


def test_every_hostile_input_keeps_the_promises(tmp_path):
    with ThreadPoolExecutor(WORKERS) as pool:
        # the slow cases (past spec loading: torch) first, so the pool ends together
        results = list(pool.map(lambda c: _run(c, tmp_path), sorted(all_cases(), key=lambda c: not c.torch)))
    failed = [f"{case.id}: {problem}" for case, problem in results if problem]
    assert not failed, f"{len(failed)} of {len(results)} cases broke a promise:\n" + "\n".join(failed)
