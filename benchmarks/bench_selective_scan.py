"""Fast selective_scan vs the sequential reference (issue 3 part 4), ratios measured in one run.

    python benchmarks/bench_selective_scan.py [--batch 8 --dim 128 --d-state 16 --length 3136]
        [--threads 2] [--repeats 5] [--ref-repeats 2] [--backward] [--plain] [--json]

Size default: batch 8, dim 128, d_state 16, L = 3136 (a 56x56 grid), fp32, CPU, 2 threads;
delta_softplus with delta_bias, D and z as in a Mamba block (``--plain``: the bare scan on the
already-softplused Δ). The cpp forward is one fused kernel call (prologue + scan + epilogue).
Every configuration is warmed up before timing; the configurations are timed in interleaved rounds
(same background load); medians with p20/p80 and minima. Target: fast >= 10x the reference (forward).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from _timing import fmt, measure, ratio  # benchmarks/ is on sys.path when run as a script

from archdsl.ops.selective_scan import (
    cpp_available,
    cpp_build_error,
    last_backend,
    selective_scan,
    selective_scan_ref,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--length", type=int, default=3136)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-repeats", type=int, default=2)
    p.add_argument("--backward", action="store_true", help="also time forward+backward")
    p.add_argument("--plain", action="store_true",
                   help="the bare scan (no D, z, delta_bias, softplus), i.e. without the Mamba-block epilogue")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, d, n, L = a.batch, a.dim, a.d_state, a.length
    u = torch.randn(b, d, L)
    delta = torch.randn(b, d, L) * 0.5 - 2.0
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)  # S4D-real init
    B, C = torch.randn(b, n, L), torch.randn(b, n, L)
    D, z, bias = torch.ones(d), torch.randn(b, d, L), torch.randn(d) * 0.1
    if a.plain:  # the bare scan needs Δ > 0 (a negative Δ makes exp(Δ A) > 1 and the state overflow)
        args = (u, torch.nn.functional.softplus(delta), A, B, C, None, None, None, False, False)
    else:
        args = (u, delta, A, B, C, D, z, bias, True, False)

    backends = ["chunked"] + (["cpp"] if cpp_available() else [])
    with torch.inference_mode():
        ref = selective_scan_ref(*args)
        for name in backends:  # warm up every configuration (and build the kernel) before timing
            out = selective_scan(*args, backend=name)
            err = (out - ref).abs().max().item()
            print(f"# {name:8s} -> {last_backend():14s} max-abs err vs ref {err:.2e}", file=sys.stderr)
        fns = {"ref": lambda: selective_scan_ref(*args)}
        for name in backends:
            fns[name] = lambda name=name: selective_scan(*args, backend=name)
        reps = {k: (a.ref_repeats if k == "ref" else a.repeats) for k in fns}
        results = measure(fns, reps, warmup=False)  # warmed up above
    if a.backward:
        def fb(fn, **kw):
            xs = [t.clone().requires_grad_() for t in (u, delta, B, C)]
            o = fn(xs[0], xs[1], A, xs[2], xs[3], D, z, bias, True, False, **kw)
            o.sum().backward()

        fns = {"ref+bwd": lambda: fb(selective_scan_ref)}
        for name in backends:
            fns[f"{name}+bwd"] = lambda name=name: fb(selective_scan, backend=name)
        reps = {k: (a.ref_repeats if k == "ref+bwd" else a.repeats) for k in fns}
        results.update(measure(fns, reps))
    header = (f"selective_scan  batch={b} dim={d} d_state={n} L={L}  fp32 CPU threads={a.threads}  "
              f"{'plain scan' if a.plain else 'with D, z, delta_bias, softplus'}")
    if a.json:
        print(json.dumps({"config": header, "results": results, "cpp_error": cpp_build_error()}))
        return 0
    print(header)
    for key, r in results.items():
        base = results["ref+bwd" if key.endswith("+bwd") else "ref"]
        extra = "" if key.startswith("ref") else f"   speed-up {ratio(base, r)}"
        print(f"  {key:12s} {fmt(r)}{extra}")
    if not cpp_available():
        print(f"  (C++ kernel unavailable: {cpp_build_error()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
