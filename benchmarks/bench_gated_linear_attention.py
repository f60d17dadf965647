"""Chunked forget-gate linear attention vs its recurrent reference (issue 3 part 4), one run.

    python benchmarks/bench_gated_linear_attention.py [--batch 8 --heads 1 --key-dim 16
        --value-dim 128 --length 3136] [--threads 2] [--repeats 5] [--ref-repeats 2] [--json]

Both decay forms are timed: per head ([B,H,T], Mamba-2 SSD) and per key dim ([B,H,T,K], GLA).
fp32, CPU; every configuration is warmed up before timing, then all are timed in interleaved
rounds (same background load); medians with p20/p80 and minima.
Target: chunked >= 10x the recurrent reference.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from archdsl.ops.gated_linear_attention import (
    chunk_gated_linear_attention,
    recurrent_gated_linear_attention_ref,
)


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--key-dim", type=int, default=16)
    p.add_argument("--value-dim", type=int, default=128)
    p.add_argument("--length", type=int, default=3136)
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-repeats", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, H, K, V, T = a.batch, a.heads, a.key_dim, a.value_dim, a.length
    q, k, v = torch.randn(B, H, T, K), torch.randn(B, H, T, K), torch.randn(B, H, T, V)
    decays = {
        "per-head": F.logsigmoid(torch.randn(B, H, T) + 3.0),
        "per-key": F.logsigmoid(torch.randn(B, H, T, K) + 3.0),
    }
    results = {}
    with torch.inference_mode():
        for name, ld in decays.items():  # warm up every configuration before timing any
            ref = recurrent_gated_linear_attention_ref(q, k, v, ld)
            out = chunk_gated_linear_attention(q, k, v, ld, chunk_size=a.chunk_size)
            results[name] = {"max_abs_err": (out - ref).abs().max().item()}
        fns, reps = {}, {}
        for name, ld in decays.items():
            fns[f"{name}/ref"] = lambda ld=ld: recurrent_gated_linear_attention_ref(q, k, v, ld)
            fns[f"{name}/chunked"] = lambda ld=ld: chunk_gated_linear_attention(q, k, v, ld, chunk_size=a.chunk_size)
            reps[f"{name}/ref"], reps[f"{name}/chunked"] = a.ref_repeats, a.repeats
        timed = measure(fns, reps, warmup=False)  # warmed up above
        for name in decays:
            results[name]["ref"] = timed[f"{name}/ref"]
            results[name]["chunked"] = timed[f"{name}/chunked"]
    header = f"gated linear attention  B={B} H={H} K={K} V={V} T={T} chunk={a.chunk_size}  fp32 CPU threads={a.threads}"
    if a.json:
        print(json.dumps({"config": header, "results": results}))
        return 0
    print(header)
    for name, r in results.items():
        print(f"  {name:9s} ref     {fmt(r['ref'])}")
        print(f"  {name:9s} chunked {fmt(r['chunked'])}   max-abs err {r['max_abs_err']:.1e}")
        print(f"  {name:9s} speed-up {ratio(r['ref'], r['chunked'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
