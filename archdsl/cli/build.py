"""``archdsl build SPEC [--set K=V ...] [--image-size N] [--json] [--resolved] [--weights FILE]
[--seed S] [--batch-size B] [--features-only]``: compile a spec, run one forward pass on a dummy batch and print a
per-stage table (output shape, parameters, MACs) with totals.

``--json`` prints one object on stdout: name, layout, params, macs (batch 1), image_size,
input_shape, output_shape, batch_size, seed, stages (the table rows). ``--resolved`` prints the fully
resolved spec (extends merged, overrides applied, templates inlined) as YAML, after checking that it
compiles. ``--weights`` loads a state-dict file strictly (missing / unexpected / mis-shaped keys are a
user error, exit 2). MACs = FlopCounterMode FLOPs / 2 (see archdsl.analysis.summary).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict

from archdsl.cli.options import add_overrides_argument
from archdsl.errors import SpecError

MAX_LISTED = 5


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("build", help="compile a spec, run a dummy forward pass, print params / MACs",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("spec", metavar="SPEC", help="spec YAML file")
    add_overrides_argument(p, scope="the spec")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size of the pass and of the MACs (default: the spec's image_size); the "
                        "architecture stays the spec's (same parameters)")
    p.add_argument("--features-only", action="store_true",
                   help="build the backbone (no head; outputs one feature map per features.out_indices)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--resolved", action="store_true", help="print the fully resolved spec as YAML and exit")
    p.add_argument("--weights", default=None, metavar="FILE", help="load a state dict (strict) before the pass")
    p.add_argument("--seed", type=int, default=0, help="seed for the weight init (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the dummy forward pass (default 1)")
    return p


def load_weights(model: Any, path: str, key: str | None = None) -> None:
    """Strictly load a state dict saved with ``torch.save`` (bare, or under "model"/"state_dict", or
    under ``key``: e.g. "model_ema" of ``archdsl train``'s best.pt). Problems raise SpecError naming at
    most a few keys of each kind."""
    import torch

    from archdsl.convert.checkpoint import read_checkpoint

    state = read_checkpoint(path, "weights file")
    if key is not None and not (isinstance(state, dict) and isinstance(state.get(key), dict)):
        raise SpecError(f"the file holds no '{key}' state dict", file=path)
    if isinstance(state, dict):
        for name in ((key,) if key else ("model", "state_dict")):
            if isinstance(state.get(name), dict):
                state = state[name]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError("expected a state dict (name -> tensor)", file=path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {what} key(s): {', '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise SpecError("the weights do not fit this model: " + "; ".join(problems), file=path)
    model.load_state_dict(state, strict=True)


def _with_batch(shape: list, batch: int) -> list:
    """An output shape (or a list of them, for a backbone) at batch ``batch``."""
    return [_with_batch(s, batch) for s in shape] if shape and isinstance(shape[0], list) else [batch] + shape[1:]


def _si(n: int) -> str:
    """4130097152 -> '4.130G', 497760 -> '497.8K'."""
    for div, unit, fmt in ((1e9, "G", "{:.3f}"), (1e6, "M", "{:.1f}"), (1e3, "K", "{:.1f}")):
        if n >= div:
            return fmt.format(n / div) + unit
    return str(n)


def _table(info: Dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{info['name']} ({info['layout']}) at {info['image_size']}x{info['image_size']}, batch 1")
    t.add_column("part")
    t.add_column("output shape")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    for r in info["stages"]:
        t.add_row(r["name"], str(tuple(r["output_shape"])), f"{r['params']:,}", _si(r["macs"]))
    t.add_section()
    t.add_row("total", str(tuple(info["output_shape"])), f"{info['params']:,} ({info['params'] / 1e6:.2f}M)",
              _si(info["macs"]))
    Console().print(t)


def _size_location(spec: Any, image_size: int | None) -> dict:
    """Where a too-large model is reported: the spec's ``image_size`` (or the file, for --image-size)."""
    if image_size is None:
        return spec.locate(("image_size",))
    return {"file": spec.source_file, "path": "--image-size"}


def run(args: argparse.Namespace) -> int:
    from archdsl.cli import UserError
    from archdsl.cli.validate import check_image_size
    from archdsl.language import dump_resolved, load_spec

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_image_size(args.image_size)
    spec = load_spec(args.spec, args.overrides)  # spec errors end here, before torch is imported
    import torch

    from archdsl.analysis.memory import check_memory
    from archdsl.analysis.summary import summarize
    from archdsl.compiler import build_model

    features_only = True if args.features_only else None
    meta = build_model(spec, device="meta", image_size=args.image_size,  # checks shapes; allocates nothing
                       features_only=features_only)
    if args.resolved:  # the resolved text compiles (checked just above)
        sys.stdout.write(dump_resolved(spec))
        return 0
    size = int(args.image_size or spec.image_size)
    try:  # refuse before allocating more than max_memory
        check_memory(meta, size, args.batch_size, where=_size_location(spec, args.image_size))
    except ValueError as e:
        if isinstance(e, SpecError):
            raise
        raise UserError(str(e)) from None
    meta.eval()
    x = torch.empty(args.batch_size, int(spec.in_chans), size, size, device="meta")
    try:
        meta.check_input(x)
    except ValueError as e:
        raise UserError(str(e)) from None
    # Params, MACs and shapes on the meta device: the same figures as real tensors give
    # (tests/compiler/test_build_cli.py), without initialising or running the weights.
    summary = summarize(meta, size)
    out_shape = summary["output_shape"]
    model = meta
    if args.weights:  # the weights must load (strict) and run
        torch.manual_seed(args.seed)
        model = build_model(spec, image_size=args.image_size, features_only=features_only).eval()
        load_weights(model, args.weights)
        with torch.no_grad():
            y = model(torch.randn(args.batch_size, int(spec.in_chans), size, size))
        out_shape = [list(f.shape) for f in y] if isinstance(y, list) else list(y.shape)
    elif args.batch_size != 1:  # the summary ran at batch 1
        out_shape = _with_batch(out_shape, args.batch_size)
    info = {"name": model.name, "layout": spec.layout, "params": summary["params"], "macs": summary["macs"],
            "image_size": size, "input_shape": list(x.shape), "output_shape": out_shape,
            "batch_size": args.batch_size, "seed": args.seed, "weights": args.weights,
            "stages": summary["rows"]}
    if args.json:
        print(json.dumps(info))
    else:
        _table(info)
    return 0
