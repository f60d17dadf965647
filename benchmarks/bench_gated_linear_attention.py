"""Chunked forget-gate linear attention vs its recurrent reference (issue 3 part 4), one run.

    python benchmarks/bench_gated_linear_attention.py [--batch 8 --heads 1 --key-dim 16
        --value-dim 128 --length 3136] [--threads 2] [--repeats 5] [--ref-repeats 2] [--json]

Both decay forms are timed: per head ([B,H,T], Mamba-2 SSD) and per key dim ([B,H,T,K], GLA).
fp32, CPU; every configuration is warmed up before timing; medians with p20/p80.
Target: chunked >= 10x the recurrent reference.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from archdsl.ops.gated_linear_attention import (
    chunk_gated_linear_attention,
    recurrent_gated_linear_attention_ref,
)


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
    q = statistics.quantiles(ts, n=5, method="inclusive") if len(ts) >= 2 else [ts[0]] * 4
    return {"median": statistics.median(ts), "p20": q[0], "p80": q[3], "n": len(ts)}


def fmt(r: dict) -> str:
    return f"{r['median'] * 1e3:9.1f} ms  (p20 {r['p20'] * 1e3:.1f}, p80 {r['p80'] * 1e3:.1f}, n={r['n']})"


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
        for name, ld in decays.items():
            results[name]["ref"] = measure(lambda: recurrent_gated_linear_attention_ref(q, k, v, ld), a.ref_repeats, 0)
            results[name]["chunked"] = measure(
                lambda: chunk_gated_linear_attention(q, k, v, ld, chunk_size=a.chunk_size), a.repeats
            )
    header = f"gated linear attention  B={B} H={H} K={K} V={V} T={T} chunk={a.chunk_size}  fp32 CPU threads={a.threads}"
    if a.json:
        print(json.dumps({"config": header, "results": results}))
        return 0
    print(header)
    for name, r in results.items():
        ratio = r["ref"]["median"] / r["chunked"]["median"]
        print(f"  {name:9s} ref     {fmt(r['ref'])}")
        print(f"  {name:9s} chunked {fmt(r['chunked'])}   speed-up {ratio:6.1f}x   max-abs err {r['max_abs_err']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
