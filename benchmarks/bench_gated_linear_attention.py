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

import torch
import torch.nn.functional as F
from _timing import fmt, measure, ratio  # benchmarks/ is on sys.path when run as a script

from archdsl.ops.gated_linear_attention import (
    chunk_gated_linear_attention,
    recurrent_gated_linear_attention_ref,
)


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
