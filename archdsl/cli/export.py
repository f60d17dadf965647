"""``archdsl export SPEC --format {pt2,onnx} --out FILE [--weights W] [--set K=V ...] [--image-size N]
[--batch-size B] [--no-dynamic-batch] [--dynamic-hw] [--check] [--json]``

Builds SPEC (with the overrides), loads ``--weights`` (strict), and writes ``torch.export`` (pt2:
``torch.export.load(FILE).module()``) or ONNX (the dynamo exporter; one self-contained file)
atomically. The batch is dynamic unless ``--no-dynamic-batch``; ``--dynamic-hw`` also makes height
and width dynamic (multiples of the total stride) where the spec's ops allow it (docs/export.md).
``--check`` runs the exported model (onnxruntime for ONNX) on the example and fails (exit 1) when its
output differs from eager by more than 1e-4 (relative to the output scale).
Exit 2 with one line on stderr for a spec error, a bad flag or an export the spec does not allow.
"""
from __future__ import annotations

import argparse
import json
import sys

from archdsl.cli.options import add_overrides_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a spec as a torch.export program (.pt2) or ONNX",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("spec", metavar="SPEC", help="the model spec (YAML)")
    p.add_argument("--format", required=True, choices=("pt2", "onnx"), help="pt2 (torch.export) or onnx")
    p.add_argument("--out", required=True, help="output file (written atomically)")
    p.add_argument("--weights", default=None, metavar="FILE", help="state dict to load (strict) before export")
    add_overrides_argument(p, scope="the spec", example="num_classes=10")
    p.add_argument("--image-size", type=int, default=None, help="example input size (default: the spec's)")
    p.add_argument("--batch-size", type=int, default=2, help="example batch (default 2; >= 2 for a dynamic batch)")
    p.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                   help="export for the example batch size only")
    p.add_argument("--dynamic-hw", action="store_true", help="also make height / width dynamic (where allowed)")
    p.add_argument("--check", action="store_true", help="compare the exported model with eager on the example")
    p.add_argument("--seed", type=int, default=0, help="seed of the example input (and of the weights without --weights)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return p


def _check(args: argparse.Namespace, model, example, artifact) -> float:
    """Max |exported - eager| / max(1, max |eager|) on the example."""
    import torch

    from archdsl.cli import UserError

    with torch.no_grad():
        ref = model(example)
        if args.format == "pt2":
            out = artifact.module()(example)
        else:
            try:
                import onnxruntime as ort
            except ImportError:
                raise UserError("--check of an ONNX file needs onnxruntime (pip install onnxruntime)") from None
            sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
            out = torch.from_numpy(sess.run(None, {"img": example.numpy()})[0])
    return float((out - ref).abs().max() / max(1.0, float(ref.abs().max())))


def run(args: argparse.Namespace) -> int:
    import torch

    from archdsl.cli import UserError
    from archdsl.cli.build import load_weights
    from archdsl.compiler import build_model
    from archdsl.export import (
        ExportError,
        example_input,
        export_onnx,
        export_program,
        save_onnx,
        save_program,
    )

    if args.image_size is not None and args.image_size < 1:
        raise UserError(f"--image-size must be >= 1, got {args.image_size}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    torch.manual_seed(args.seed)
    model = build_model(args.spec, overrides=args.overrides).eval()
    if args.weights:
        load_weights(model, args.weights)
    example = example_input(model, args.batch_size, args.image_size)
    try:
        model.check_input(example)
        kw = dict(dynamic_batch=args.dynamic_batch, dynamic_hw=args.dynamic_hw)
        if args.format == "pt2":
            artifact = export_program(model, example, **kw)
            save_program(artifact, args.out)
        else:
            artifact = export_onnx(model, example, **kw)
            save_onnx(artifact, args.out)
    except (ExportError, ValueError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    summary = {"spec": args.spec, "format": args.format, "out": args.out, "input_shape": list(example.shape),
               "dynamic_batch": args.dynamic_batch, "dynamic_hw": args.dynamic_hw, "weights": args.weights}
    if args.check:
        summary["max_rel_error"] = err = _check(args, model, example, artifact)
        if not err <= 1e-4:
            print(f"archdsl export: exported model differs from eager by {err:.3g} (relative)", file=sys.stderr)
            return 1
    message = (f"exported {args.spec} ({args.format}, input {list(example.shape)}, dynamic batch "
               f"{args.dynamic_batch}, dynamic H/W {args.dynamic_hw}) -> {args.out}")
    print(json.dumps(summary) if args.json else message, file=sys.stdout if args.json else sys.stderr)
    return 0
