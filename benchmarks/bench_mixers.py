"""Forward images/s of every registered mixer at MLLA-T stage-1 size, ratios vs linear_attention.

    python benchmarks/bench_mixers.py [--batch 4 --dim 64 --heads 2 --grid 56] [--threads 2]
        [--repeats 5] [--only NAME ...] [--json]

Size default: x [4, 56*56, 64] (MLLA-T stage 1 at 224², heads 2), fp32, CPU, eval, inference_mode.
Every registered mixer runs with its defaults, plus the named variants below (the MLLA attention,
the forget-gate paths, Swin windows, the SSM scan orders). All configurations are built and warmed
up before any is timed, then timed round-robin (``_timing.measure``: each round runs every
configuration once, order rotated); medians with p20/p80 and the minimum. images/s = batch / median; the ratio vs linear_attention
(throughput, > 1 = faster) is given for medians and for minima.
The kernel/path each module took is printed (its extra_repr / last backend).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from _timing import fmt, measure  # benchmarks/ is on sys.path when run as a script

from archdsl import registry

VARIANTS = [
    ("linear_attention[mlla: rope2d+lepe]", "linear_attention", {"positional": ["rope2d", "lepe"]}),
    ("linear_attention[+input_gate]", "linear_attention", {"input_gate": True}),
    ("linear_attention[+forget_gate row]", "linear_attention", {"forget_gate": True}),
    ("linear_attention[+forget_gate scalar]", "linear_attention", {"forget_gate": "scalar"}),
    ("linear_attention[-normalize]", "linear_attention", {"normalize": False}),
    ("softmax_attention[window 7, shift]", "softmax_attention", {"window_size": 7, "shift": True}),
    ("selective_ssm[cross4]", "selective_ssm", {"scan_order": "cross4"}),
]


def path_of(m: torch.nn.Module) -> str:
    backend = getattr(m, "backend", None)
    path = getattr(m, "path", None)
    if path:
        return path + (f" [{backend}]" if backend else "")
    if backend:
        return f"selective_scan [{backend}]"
    r = m.extra_repr()
    return r[r.find("kernel="):] if "kernel=" in r else type(m).__name__


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--grid", type=int, default=56)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", nargs="*", help="labels to run, e.g. linear_attention \"selective_ssm[cross4]\" (default: all)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    hw = (a.grid, a.grid)
    x = torch.randn(a.batch, a.grid * a.grid, a.dim)

    configs = [(name, name, {}) for name in registry.names("mixer")]
    configs += [v for v in VARIANTS if registry.has("mixer", v[1])]
    if a.only:
        configs = [c for c in configs if c[0] in a.only]
    mods = {}
    with torch.inference_mode():
        for label, name, opts in configs:  # build and warm up everything before timing anything
            m = registry.get("mixer", name)(a.dim, a.heads, **opts).eval()
            m(x, hw)
            mods[label] = m
        # Round-robin: each round times every configuration once, so a change of machine load
        # during the run hits all of them alike (the machine is shared).
        results = measure({label: (lambda m=m: m(x, hw)) for label, m in mods.items()},
                          {label: a.repeats for label in mods}, warmup=False)
        for label, m in mods.items():
            r = results[label]
            r["images_per_s"] = a.batch / r["median"]
            r["path"] = path_of(m)
            r["params"] = sum(q.numel() for q in m.parameters())
            results[label] = r
            print(f"# {label:40s} {fmt(r)}", file=sys.stderr)
    base = results.get("linear_attention")
    for r in results.values():  # throughput ratios: of medians, and of minima
        r["ratio_vs_linear_attention"] = (base["median"] / r["median"]) if base else None
        r["ratio_min_vs_linear_attention"] = (base["min"] / r["min"]) if base else None
    if a.json:
        print(json.dumps({"config": vars(a), "torch": torch.__version__, "results": results}, indent=2))
        return 0
    print(f"mixer forward, x [{a.batch}, {a.grid}x{a.grid}, {a.dim}], heads {a.heads}, fp32, CPU, "
          f"{a.threads} threads, torch {torch.__version__}")
    print(f"{'mixer':40s} {'params':>8s} {'median ms':>10s} {'p20-p80 ms':>15s} {'min ms':>8s} {'img/s':>8s} "
          f"{'vs LA (med/min)':>15s}  path")
    for label, r in results.items():
        ratio = (f"{r['ratio_vs_linear_attention']:.2f}/{r['ratio_min_vs_linear_attention']:.2f}"
                 if r["ratio_vs_linear_attention"] else "-")
        print(f"{label:40s} {r['params']:8d} {r['median'] * 1e3:10.1f} "
              f"{r['p20'] * 1e3:7.1f}-{r['p80'] * 1e3:<7.1f} {r['min'] * 1e3:8.1f} {r['images_per_s']:8.1f} "
              f"{ratio:>15s}  {r['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
