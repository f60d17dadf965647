"""archdsl's MLLA-T (specs/mlla_t.yaml) against the official ``models/mlla.py`` of LeapLabTHU/MLLA,
same weights, measured side by side in one run.

The official file is loaded from ``--official PATH`` (a checkout of github.com/LeapLabTHU/MLLA or the
file ``models/mlla.py`` itself; it needs timm) or from the environment variable
``ARCHDSL_MLLA_OFFICIAL``; without either, the benchmark falls back to the independent
re-implementation in tests/paper/official_mlla.py and says so. The official model gets random
weights (every tensor, BN statistics included), saved as a checkpoint and converted for the spec by
``archdsl import-weights --from mlla``; the logits of both are compared before any timing.

Method: CPU, 224x224, ``--threads`` threads (2 by default). Every variant of a section is warmed up,
then the variants are timed in interleaved rounds (order rotated every round, ``--rounds`` >= 7),
so load changes on a shared machine hit all of them alike; each variant's figure is the median, with
the p20 - p80 spread, and the speed-up is the ratio of medians against the official code. Sections:

* ``eval fp32, batch B`` for each ``--batches`` (default 1, 8, 32): ``model.eval()``, inference mode;
* ``eval bf16 autocast``: ``torch.autocast("cpu", torch.bfloat16)`` on both sides (skipped, with a
  line saying why, on a CPU without bf16 matmul units unless ``--bf16``);
* ``train step``: forward, cross-entropy, backward and an SGD step at ``--train-batch`` (default 8).

Variants: ``official``, ``archdsl`` (the compiled spec, eager) and ``archdsl+optimize``
(``archdsl.optimize(model, for_inference=True)``; eval sections only); with ``--compile`` also
``official+compile`` and ``archdsl+optimize+compile`` (``torch.compile``; compilation not timed).
It prints the machine's GEMM GFLOP/s per dtype and each variant's fraction of that ceiling
(MLLA-T: 8.26 GFLOP per 224x224 image). Usage::

    python benchmarks/bench_mlla_vs_official.py --official /path/to/MLLA [--batches 1 8 32] [--rounds 7]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "paper"))
sys.path.insert(0, HERE)

from _timing import measure  # noqa: E402
from official_mlla import OfficialMLLA, randomize_  # noqa: E402

import archdsl  # noqa: E402
from archdsl.cli import main as archdsl_cli  # noqa: E402

SPEC = os.path.join(ROOT, "specs", "mlla_t.yaml")
GFLOP_PER_IMAGE = 8.26  # MLLA-T at 224x224 (2 x 4.13 GMACs)
MLLA_T = {"embed_dim": 64, "depths": [2, 4, 8, 4], "num_heads": [2, 4, 8, 16]}


def load_official(path: str | None, image_size: int) -> Tuple[nn.Module, str]:
    """The official MLLA-T (from ``path``: a checkout or its models/mlla.py), else the re-implementation."""
    if not path:
        print("WARNING: no --official PATH (or ARCHDSL_MLLA_OFFICIAL): comparing against the "
              "re-implementation tests/paper/official_mlla.py, not the official file", file=sys.stderr)
        return OfficialMLLA(img_size=image_size), "tests/paper/official_mlla.py (re-implementation)"
    file = path if path.endswith(".py") else os.path.join(path, "models", "mlla.py")
    spec = importlib.util.spec_from_file_location("official_mlla_models_mlla", file)
    if spec is None or spec.loader is None or not os.path.isfile(file):
        raise SystemExit(f"bench_mlla_vs_official: error: no official models/mlla.py at {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MLLA(img_size=image_size, **MLLA_T), os.path.abspath(file)


def build_pair(official_path: str | None, image_size: int) -> Tuple[nn.Module, nn.Module, str]:
    """(official, archdsl) with the same random weights, converted by ``archdsl import-weights``."""
    torch.manual_seed(0)
    ref, source = load_official(official_path, image_size)
    randomize_(ref)
    ours = archdsl.build_model(SPEC, [f"image_size={image_size}"])
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = os.path.join(tmp, "official.pth"), os.path.join(tmp, "archdsl.pt")
        torch.save({"model": ref.state_dict()}, ckpt)
        rc = archdsl_cli(["import-weights", ckpt, "--from", "mlla", "--spec", SPEC,
                          "--set", f"image_size={image_size}", "--out", out])
        if rc != 0:
            raise SystemExit(f"bench_mlla_vs_official: archdsl import-weights failed (exit {rc})")
        ours.load_state_dict(torch.load(out, weights_only=True))
    return ref.eval(), ours.eval(), source


def bf16_units() -> List[str]:
    """The CPU flags that mean native bf16 matmul (avx512_bf16, amx_bf16) found in /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def gemm_gflops(dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """Best GFLOP/s of an n x n x n matmul in ``dtype`` over ~``seconds``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def report(title: str, stats: Dict[str, dict], batch: int, ceiling: float, scale: float) -> None:
    """One table: median (p20 - p80), images/s, speed-up vs official, fraction of the GEMM ceiling."""
    base = stats["official"]["median"]
    print(f"\n{title}")
    for name, r in stats.items():
        ips = batch / r["median"]
        print(f"  {name:<28} {r['median'] * 1e3:9.1f} ms  (p20 {r['p20'] * 1e3:.1f} - p80 {r['p80'] * 1e3:.1f}, "
              f"n={r['n']})  {ips:7.2f} img/s  {base / r['median']:5.2f}x official  "
              f"{ips * GFLOP_PER_IMAGE * scale / ceiling:5.1%} of GEMM peak")


def timed(fns: Dict[str, Callable[[], object]], rounds: int, warmup: int) -> Dict[str, dict]:
    for _ in range(max(warmup - 1, 0)):
        for fn in fns.values():
            fn()
    return measure(fns, {k: rounds for k in fns}, warmup=warmup > 0)


def logit_check(models: Dict[str, nn.Module], x: torch.Tensor, autocast: bool) -> str:
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        outs = {k: m(x).float() for k, m in models.items()}
    ref = outs.pop("official")
    scale = ref.abs().max().item()
    return ", ".join(f"{k} max|dlogit| {(o - ref).abs().max().item():.2e}" for k, o in outs.items()) + \
        f" (max|logit| {scale:.2f})"


def eval_fns(models: Dict[str, nn.Module], x: torch.Tensor, autocast: bool) -> Dict[str, Callable[[], object]]:
    def run(m: nn.Module) -> Callable[[], object]:
        def fn() -> object:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                return m(x)
        return fn
    return {k: run(m) for k, m in models.items()}


def train_fns(models: Dict[str, nn.Module], x: torch.Tensor) -> Dict[str, Callable[[], object]]:
    y = torch.randint(0, 1000, (x.shape[0],))

    def step(m: nn.Module) -> Callable[[], object]:
        opt = torch.optim.SGD(m.parameters(), lr=1e-6)

        def fn() -> object:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            return loss
        return fn
    return {k: step(m) for k, m in models.items()}


def eval_models(ref: nn.Module, ours: nn.Module, args: argparse.Namespace, bf16: bool) -> Dict[str, nn.Module]:
    models = {"official": ref, "archdsl": ours,
              "archdsl+optimize": archdsl.optimize(ours, for_inference=True, dtype=torch.bfloat16 if bf16 else None)}
    if args.compile:
        models["official+compile"] = torch.compile(ref)
        models["archdsl+optimize+compile"] = torch.compile(models["archdsl+optimize"])
    return models


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", default=os.environ.get("ARCHDSL_MLLA_OFFICIAL"),
                    help="a checkout of LeapLabTHU/MLLA or its models/mlla.py (env ARCHDSL_MLLA_OFFICIAL)")
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32], help="fp32 eval batch sizes (none: skip)")
    ap.add_argument("--train-batch", type=int, default=8, help="training-step batch size (0: skip)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bf16 autocast section: auto = only where the CPU has bf16 matmul units")
    ap.add_argument("--compile", action="store_true", help="add torch.compile variants (compile time not timed)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    torch.set_num_threads(args.threads)
    ref, ours, source = build_pair(args.official, args.image_size)
    units = bf16_units()
    scale = (args.image_size / 224) ** 2
    fp32, bf16 = gemm_gflops(torch.float32, 1024), gemm_gflops(torch.bfloat16, 256, 0.5)
    print(f"official: {source}\ntorch {torch.__version__}, {args.threads} threads, image {args.image_size}, "
          f"rounds {args.rounds} (interleaved, after {args.warmup} warm-up)")
    print(f"CPU bf16 units: {', '.join(units) or 'none (no avx512_bf16 / amx_bf16)'}; "
          f"GEMM: fp32 {fp32:.1f} GFLOP/s (1024^3), bf16 {bf16:.1f} GFLOP/s (256^3)")
    models = eval_models(ref, ours, args, bf16=False)
    print("logits fp32 (batch 2): " + logit_check(models, torch.randn(2, 3, args.image_size, args.image_size), False))
    for b in args.batches:
        x = torch.randn(b, 3, args.image_size, args.image_size)
        report(f"eval fp32, batch {b}", timed(eval_fns(models, x, False), args.rounds, args.warmup), b, fp32, scale)
    if args.bf16 == "on" or (args.bf16 == "auto" and units):
        models = eval_models(ref, ours, args, bf16=True)
        x = torch.randn(8, 3, args.image_size, args.image_size)
        print("logits bf16 autocast (batch 2): " + logit_check(models, x[:2], True))
        report("eval bf16 autocast, batch 8", timed(eval_fns(models, x, True), args.rounds, args.warmup), 8,
               bf16, scale)
    else:
        print(f"\neval bf16 autocast: skipped (no bf16 matmul units on this CPU: bf16 GEMM runs at {bf16:.1f} "
              f"GFLOP/s vs fp32 {fp32:.1f}; --bf16 on to run it anyway)")
    if args.train_batch:
        x = torch.randn(args.train_batch, 3, args.image_size, args.image_size)
        models = {"official": ref.train(), "archdsl": ours.train()}
        report(f"train step (fwd + bwd + SGD), batch {args.train_batch}",
               timed(train_fns(models, x), args.rounds, args.warmup), args.train_batch, fp32, 3 * scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
