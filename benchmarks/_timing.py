"""Timing helpers shared by the kernel benchmarks: interleaved rounds so every variant sees the same
background load, median / p20 / p80 / min per variant, and speed-up ratios of medians and minima."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List


def measure(fns: Dict[str, Callable[[], object]], repeats: Dict[str, int], warmup: bool = True) -> Dict[str, dict]:
    """Time every function in interleaved rounds (one call of each per round, order rotated), so
    all of them see the same background load on a shared machine; with ``warmup`` each is called
    once before any timing. Returns per name, in seconds: median, p20, p80, min, n."""
    for fn in fns.values() if warmup else ():
        fn()
    names = list(fns)
    times: Dict[str, List[float]] = {k: [] for k in names}
    for r in range(max(repeats.values())):
        for name in names[r % len(names):] + names[: r % len(names)]:
            if len(times[name]) < repeats[name]:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=5, method="inclusive") if len(ts) >= 2 else [ts[0]] * 4
        out[name] = {"median": statistics.median(ts), "p20": q[0], "p80": q[3], "min": min(ts), "n": len(ts)}
    return out


def fmt(r: dict) -> str:
    return (
        f"{r['median'] * 1e3:9.1f} ms  (p20 {r['p20'] * 1e3:.1f}, p80 {r['p80'] * 1e3:.1f}, "
        f"min {r['min'] * 1e3:.1f}, n={r['n']})"
    )


def ratio(base: dict, fast: dict) -> str:
    return f"{base['median'] / fast['median']:6.1f}x (of medians), {base['min'] / fast['min']:6.1f}x (of minima)"
