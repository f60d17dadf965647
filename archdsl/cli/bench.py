"""``archdsl bench SPEC... [--batch-size N] [--image-size N] [--device cpu|cuda] [--dtype ...]
[--channels-last] [--compile] [--train] [--json]``

Throughput and latency of each spec's model (``archdsl.analysis.benchmark.measure_throughput``):
warm-up, then timed iterations (CUDA synchronised), median with the p20/p80 spread, images/s =
batch / median time, peak memory. Every spec is warmed up before it is timed; the exact settings are
printed with each result. ``--json`` prints one object (a list for several specs) on stdout.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Tuple

from archdsl.cli import UserError
from archdsl.cli.options import add_overrides_argument


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The timing flags shared by ``bench`` and ``report --bench``."""
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (default 8)")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the spec's image_size)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model before timing")
    p.add_argument("--train", action="store_true", help="time a training step (forward, backward, AdamW)")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations (default 5)")
    p.add_argument("--iters", type=int, default=10, help="minimum timed iterations (default 10)")
    p.add_argument("--min-time", type=float, default=1.0, help="minimum timed seconds (default 1.0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="measure throughput / latency / memory of specs",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="model spec files")
    add_overrides_argument(p, scope="every spec")
    add_bench_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    return p


def check_bench_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.image_size is not None and args.image_size < 1:
        raise UserError(f"--image-size must be >= 1, got {args.image_size}")
    if args.iters < 1 or args.warmup < 0:
        raise UserError(f"need --iters >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")


def _resolve(path: str, args: argparse.Namespace, overrides: List[str] | None) -> Tuple[Any, int, int]:
    from archdsl import build_model, load_spec

    ov = list(overrides if overrides is not None else getattr(args, "overrides", []) or [])
    spec = load_spec(path, ov)
    model = build_model(spec)
    size = int(args.image_size or spec.image_size)
    return model, size, int(spec.in_chans)


def bench_specs(paths: List[str], args: argparse.Namespace,
                overrides: List[str] | None = None) -> List[Dict[str, Any]]:
    """Build every spec, warm every model up (one untimed pass each, so the first spec is not timed
    on a cold machine), then time each with the flags of :func:`add_bench_arguments`."""
    import torch

    from archdsl.analysis.benchmark import measure_throughput

    if args.threads:
        torch.set_num_threads(args.threads)
    built = [(p, *_resolve(p, args, overrides)) for p in paths]
    if len(built) > 1:
        for _, model, size, chans in built:
            measure_throughput(model, batch_size=args.batch_size, image_size=size, in_chans=chans,
                               device=args.device, dtype=args.dtype, channels_last=args.channels_last,
                               warmup=1, iters=1, min_time=0.0, train=args.train)
    results = []
    for path, model, size, chans in built:
        res = measure_throughput(model, batch_size=args.batch_size, image_size=size, in_chans=chans,
                                 device=args.device, dtype=args.dtype, channels_last=args.channels_last,
                                 warmup=args.warmup, iters=args.iters, min_time=args.min_time,
                                 train=args.train, compile=args.compile)
        results.append({"spec": path, **res})
    return results


def format_result(r: Dict[str, Any]) -> str:
    """One human-readable line: figures, then the exact settings."""
    hw = "x".join(str(s) for s in r["image_size"])
    settings = (f"batch {r['batch_size']}, {hw}, {r['device']}, {r['dtype']}, {r['mode']}, "
                f"channels_last={r['channels_last']}, compile={r['compile']}, threads={r['num_threads']}, "
                f"warmup {r['warmup']}, {r['timed_iters']} timed iters, torch {r['torch']}")
    if r.get("error"):
        return f"{r['spec']}: ERROR {r['error']}  [{settings}]"
    mem = f"{r['peak_memory_mib']:.0f} MiB" if r.get("peak_memory_mib") is not None else "n/a"
    return (f"{r['spec']}: {r['images_per_s']:.2f} images/s, latency {r['latency_ms']:.1f} ms "
            f"(p20 {r['p20_ms']:.1f}, p80 {r['p80_ms']:.1f}), peak memory {mem}  [{settings}]")


def run(args: argparse.Namespace) -> int:
    check_bench_args(args)
    results = bench_specs(args.specs, args)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(format_result(r))
    return 1 if any(r.get("error") for r in results) else 0
