"""archdsl's MLLA-T (specs/mlla_t.yaml) vs a straightforward re-implementation of the official
module structure (tests/paper/official_mlla.py), measured in one run: images/s ratio.

Method: CPU, batch 8, 224x224, float32, eval, ``torch.inference_mode``, 2 threads by default. Both
models get the same weights (converted with archdsl's importer). After a warm-up of each variant,
timed forward passes are interleaved round-robin (variant A, B, C, A, B, C, ...) so that load changes
on a shared machine hit every variant alike; each variant's figure is the median over rounds, and
the ratio is the ratio of medians (the median of per-round ratios is printed too, and the ratio of
the process CPU time (``time.process_time``, all threads), which is less sensitive to other processes
taking the cores on a shared machine).

Variants: ``official`` (eager), ``archdsl`` (eager, the generic ``linear_attention`` mixer),
``official+channels_last`` / ``archdsl+channels_last`` (the input image in channels-last memory
format: the stem's convolutions then run oneDNN's channels-last kernels), ``archdsl+mlla_attention``
(the same spec with ``--set mixer.type=mlla_attention``, the fused MLLA attention), and with ``--compile`` both models under ``torch.compile``
(compilation is not timed). Usage::

    python benchmarks/bench_mlla_vs_official.py [--batch-size 8] [--rounds 7] [--threads 2] [--compile]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "paper"))

from official_mlla import OfficialMLLA, randomize_  # noqa: E402

import archdsl  # noqa: E402
from archdsl.convert.mlla import convert_mlla_state_dict  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="add torch.compile variants (compile time not timed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ref = randomize_(OfficialMLLA(img_size=args.image_size)).eval()
    ours = archdsl.build_model(os.path.join(HERE, "..", "specs", "mlla_t.yaml"),
                               [f"image_size={args.image_size}"]).eval()
    ours.load_state_dict(convert_mlla_state_dict(ref.state_dict(), ours))
    # the same spec with the fused MLLA attention (archdsl/layers/mlla.py), one override
    fused = archdsl.build_model(os.path.join(HERE, "..", "specs", "mlla_t.yaml"),
                                [f"image_size={args.image_size}", "mixer.type=mlla_attention"]).eval()
    fused.load_state_dict(ours.state_dict())
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = ref(x)
        err = max((ours(x) - y).abs().max().item(), (fused(x) - y).abs().max().item())

    variants = {"official": (ref, x), "official+channels_last": (ref, x_cl), "archdsl": (ours, x),
                "archdsl+channels_last": (ours, x_cl),
                "archdsl+mlla_attention": (fused, x)}
    if args.compile:
        variants["official+compile"] = (torch.compile(ref), x)
        variants["archdsl+compile"] = (torch.compile(ours), x)
        variants["archdsl+mlla_attention+compile"] = (torch.compile(fused), x)
    times = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    with torch.inference_mode():
        for m, inp in variants.values():  # warm every variant before timing any
            for _ in range(args.warmup):
                m(inp)
        for _ in range(args.rounds):
            for name, (m, inp) in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                m(inp)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)

    base = statistics.median(times["official"])
    base_cpu = statistics.median(cpu["official"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        per_round = statistics.median(o / t for o, t in zip(times["official"], ts))
        rows.append({"variant": name, "images_per_s": args.batch_size / med, "median_ms": med * 1e3,
                     "ratio_vs_official": base / med, "median_round_ratio": per_round,
                     "cpu_s": statistics.median(cpu[name]), "cpu_ratio_vs_official": base_cpu / statistics.median(cpu[name])})
    settings = {"batch_size": args.batch_size, "image_size": args.image_size, "threads": args.threads,
                "rounds": args.rounds, "warmup": args.warmup, "dtype": "float32", "mode": "eval+inference_mode",
                "torch": torch.__version__, "max_abs_logit_diff": err}
    if args.json:
        print(json.dumps({"settings": settings, "rows": rows}))
    else:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        for r in rows:
            print(f"{r['variant']:<24} {r['images_per_s']:8.2f} images/s  {r['median_ms']:9.1f} ms  "
                  f"ratio {r['ratio_vs_official']:.3f}x  (median per-round ratio {r['median_round_ratio']:.3f}x; "
                  f"process CPU time ratio {r['cpu_ratio_vs_official']:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
