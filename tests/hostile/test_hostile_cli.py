"""The hostile-input suite: every case of hostile_cases.py through the real CLI (``python -m
archdsl``) in a subprocess with a time limit and an address-space limit. Each must exit 0 or 2 as
the case says, print no traceback, finish in under 20 s, print the expected message (control
characters escaped), and leave no marker from a plugin module unless the case opted in.

The cases run in a thread pool (each is a subprocess; most stop at spec loading, which does not
import torch) so the whole suite takes about as long as its slowest few cases. A case that gets past
spec loading imports torch and runs it on the meta device. On a loaded machine starting Python (or
torch) alone can take many seconds, so each case gets 20 s plus the time that start takes here,
measured once in a subprocess: ``python -m archdsl --version`` for the cases that stop at spec
loading, ``import torch`` and one meta-device convolution (which loads the meta kernels) for the
others. A case that hangs (a FIFO read) or grows without bound still fails.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostile_cases import DIR, FIFO, MARKER, Case, all_cases

TIME_LIMIT_S = 20
ADDRESS_SPACE = 6 << 30  # torch needs ~2-3 GiB of address space to import; a runaway load needs more
WORKERS = 4


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


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


def _start_s(*argv: str) -> float:
    """Seconds a subprocess ``python ARGV`` takes on this machine now (the start every case pays)."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, *argv], check=True, capture_output=True)
    return time.monotonic() - t0


TORCH_START = ("-c", "import torch; torch.nn.functional.conv2d(torch.empty(1, 3, 8, 8, device='meta'), "
                     "torch.empty(4, 3, 3, 3, device='meta'))")


def _run(case: Case, root: Path, limit_s: float = TIME_LIMIT_S) -> tuple[Case, str]:
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
                              timeout=limit_s, preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return case, f"did not finish in {limit_s:.0f} s"
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
    if proc.returncode == 2 and len(err.strip().splitlines()) != 1:
        problems.append("the error is not one line")
    if took >= limit_s:
        problems.append(f"took {took:.1f} s")
    return case, "; ".join(problems) + (f" -- output: {text[-300:]!r}" if problems else "")


def test_at_least_80_distinct_cases():
    cases = all_cases()
    assert len(cases) >= 80
    assert len({c.id for c in cases}) == len(cases)


def test_every_hostile_input_keeps_the_promises(tmp_path):
    cases = all_cases()
    limit = TIME_LIMIT_S + _start_s("-m", "archdsl", "--version")
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda c: _run(c, tmp_path, limit), [c for c in cases if not c.torch]))
    slow_limit = TIME_LIMIT_S + _start_s(*TORCH_START)
    with ThreadPoolExecutor(WORKERS // 2) as pool:
        results += pool.map(lambda c: _run(c, tmp_path, slow_limit), [c for c in cases if c.torch])
    failed = [f"{case.id}: {problem}" for case, problem in results if problem]
    assert not failed, f"{len(failed)} of {len(results)} cases broke a promise:\n" + "\n".join(failed)
