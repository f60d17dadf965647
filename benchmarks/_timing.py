"""Shared timing helper for the op benchmarks: warm-up, then median and p20/p80 of repeats."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def measure(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` calls; seconds: median, p20, p80."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    q = statistics.quantiles(ts, n=5) if len(ts) >= 2 else [ts[0]] * 4
    return {"median": statistics.median(ts), "p20": q[0], "p80": q[3], "n": len(ts)}


def fmt(r: dict) -> str:
    return f"{r['median'] * 1e3:9.1f} ms  (p20 {r['p20'] * 1e3:.1f}, p80 {r['p80'] * 1e3:.1f}, n={r['n']})"
