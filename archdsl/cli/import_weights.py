"""``archdsl import-weights --from {mlla,timm} CHECKPOINT --spec SPEC [--set K=V ...] [--features-only] --out OUT.pt``

Builds SPEC (with the overrides), converts the checkpoint's state dict (official MLLA layout, or a
timm model's ``state_dict()``: swin_tiny_patch4_window7_224, convnext_tiny, vit_small_patch16_224 /
deit_small_patch16_224; optionally under "model") to the
compiled model's keys, loads it strictly to prove it fits, and writes the
plain state dict atomically to OUT.pt (``archdsl build SPEC --weights OUT.pt`` loads it).
``--features-only`` converts for the backbone with per-output norms (official detection /
segmentation checkpoints; ``archdsl build SPEC --features-only --set features.norm=true --weights OUT.pt``).
Exit 2 with one line on stderr for a bad file, a spec error, or missing / unexpected / mis-shaped keys.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

from archdsl.cli.options import add_overrides_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("import-weights", help="convert an official checkpoint into a spec's state dict",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--from", dest="fmt", required=True, metavar="FORMAT",
                   help="layout of the checkpoint: mlla (github.com/LeapLabTHU/MLLA) or timm (a timm model's "
                        "state_dict)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint file (.pth / .pt)")
    p.add_argument("--spec", required=True, help="the model spec the weights are converted for")
    add_overrides_argument(p, scope="the spec", example="stages.embed_dim=96")
    p.add_argument("--out", required=True, help="output file (plain state dict, written atomically)")
    p.add_argument("--features-only", action="store_true",
                   help="convert for the spec's backbone (features_only, per-output norms norm{i} as the "
                        "official detection / segmentation backbones; a classification checkpoint leaves "
                        "them initialised); build it with --features-only --set features.norm=true")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return p


def _check_out(out: str) -> None:
    """``--out`` must name a file in a folder we can write (it is written atomically at the end)."""
    from archdsl.cli import UserError

    if os.path.isdir(out):
        raise UserError(f"--out {out} is a directory; give a file name, e.g. {os.path.join(out, 'weights.pt')}")
    folder = os.path.dirname(os.path.abspath(out))
    probe = folder
    while not os.path.exists(probe):  # the nearest existing parent is where the folders get created
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UserError(f"--out {out}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise UserError(f"--out {out}: permission denied (cannot write in {probe})")


def run(args: argparse.Namespace) -> int:
    from archdsl.cli import UserError
    from archdsl.errors import did_you_mean
    from archdsl.language import load_spec

    overrides = list(args.overrides)
    if args.features_only and not any(o.lstrip("+").startswith("features.norm") for o in overrides):
        overrides.append("features.norm=true")
    spec = load_spec(args.spec, overrides)  # spec and --out errors end here, before torch is imported
    _check_out(args.out)
    from archdsl.compiler import build_model
    from archdsl.convert import FORMATS, load_checkpoint, save_state_dict

    if args.fmt not in FORMATS:
        raise UserError(f"--from: unknown format '{args.fmt}'{did_you_mean(args.fmt, FORMATS)}; "
                        f"known: {', '.join(sorted(FORMATS))}")
    official = load_checkpoint(args.checkpoint)
    model = build_model(spec, features_only=True if args.features_only else None)
    report: dict = {}
    convert = FORMATS[args.fmt]
    takes_report = "report" in inspect.signature(convert).parameters
    state = convert(official, model, report=report) if takes_report else convert(official, model)
    model.load_state_dict(state, strict=True)
    save_state_dict(state, args.out)
    initialised, classifier = report.get("initialised", []), report.get("dropped_classifier", [])
    task = report.get("dropped_task", [])
    dropped = len(official) - len(state) + len(initialised) - len(classifier) - len(task)
    summary = {"spec": args.spec, "checkpoint": args.checkpoint, "format": args.fmt, "out": args.out,
               "tensors": len(state), "dropped": dropped, "dropped_classifier": classifier,
               "dropped_task": len(task),
               "initialised": initialised, "features_only": bool(getattr(model, "features_only", False)),
               "params": sum(p.numel() for p in model.parameters())}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"converted {len(state)} tensors ({dropped} recomputable buffers dropped) from {args.checkpoint} "
              f"for {args.spec} -> {args.out}", file=sys.stderr)
        if task:
            print(f"backbone: {len(task)} tensors of the task model (neck, heads) dropped", file=sys.stderr)
        if classifier or initialised:
            print(f"backbone: {len(classifier)} classifier tensors dropped ({', '.join(classifier)}); "
                  f"{len(initialised)} output-norm tensors initialised ({', '.join(initialised)})",
                  file=sys.stderr)
    return 0
