"""``archdsl import-weights --from mlla CHECKPOINT --spec SPEC [--set K=V ...] --out OUT.pt``

Builds SPEC (with the overrides), converts the checkpoint's state dict (official layout, optionally
under "model") to the compiled model's keys, loads it strictly to prove it fits, and writes the
plain state dict atomically to OUT.pt (``archdsl build SPEC --weights OUT.pt`` loads it).
Exit 2 with one line on stderr for a bad file, a spec error, or missing / unexpected / mis-shaped keys.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from archdsl.convert import FORMATS

    p = sub.add_parser("import-weights", help="convert an official checkpoint into a spec's state dict",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--from", dest="fmt", required=True, choices=sorted(FORMATS),
                   help="layout of the checkpoint (mlla: github.com/LeapLabTHU/MLLA)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint file (.pth / .pt)")
    p.add_argument("--spec", required=True, help="the model spec the weights are converted for")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                   help="override a spec field (repeatable), e.g. --set stages.embed_dim=96")
    p.add_argument("--out", required=True, help="output file (plain state dict, written atomically)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return p


def run(args: argparse.Namespace) -> int:
    from archdsl import build_model
    from archdsl.convert import FORMATS, load_checkpoint, save_state_dict

    model = build_model(args.spec, overrides=args.overrides)
    official = load_checkpoint(args.checkpoint)
    state = FORMATS[args.fmt](official, model)
    model.load_state_dict(state, strict=True)
    save_state_dict(state, args.out)
    dropped = len(official) - len(state)
    summary = {"spec": args.spec, "checkpoint": args.checkpoint, "format": args.fmt, "out": args.out,
               "tensors": len(state), "dropped": dropped,
               "params": sum(p.numel() for p in model.parameters())}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"converted {len(state)} tensors ({dropped} recomputable buffers dropped) from {args.checkpoint} "
              f"for {args.spec} -> {args.out}", file=sys.stderr)
    return 0
