"""``archdsl validate SPEC... [--set K=V ...]``: check specs without building weights.

Each file is loaded, resolved and validated, then compiled on the ``meta`` device (shapes and
component options checked, no memory allocated). Prints ``ok: FILE (name)`` per good file; each
bad file gets one line on stderr; exit 2 if any failed.
"""
from __future__ import annotations

import argparse
import sys

from archdsl.errors import SpecError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("validate", help="check spec files (load, resolve, validate, compile on meta)",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML file(s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to every file, e.g. --set mixer.heads=4 (repeatable)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size to check the model with (as archdsl build; the spec is unchanged)")
    p.add_argument("--no-compile", action="store_true", help="only load and validate the spec (no compiler)")
    return p


def check_file(path: str, overrides=(), image_size=None, compile: bool = True):
    """Load + validate (+ compile on meta) one file; returns the spec or raises SpecError."""
    from archdsl.language import load_spec

    spec = load_spec(path, overrides)
    if compile:
        from archdsl.compiler import build_model

        build_model(spec, device="meta", image_size=image_size)
    return spec


def run(args: argparse.Namespace) -> int:
    if args.image_size is not None and args.image_size < 1:
        from archdsl.cli import UserError

        raise UserError(f"--image-size must be >= 1, got {args.image_size}")
    failed = 0
    for path in args.specs:
        try:
            spec = check_file(path, args.overrides, args.image_size, compile=not args.no_compile)
        except SpecError as e:
            failed += 1
            print(f"archdsl validate: error: {e}".replace("\n", " "), file=sys.stderr)
            continue
        print(f"ok: {path} ({spec.name})")
    return 2 if failed else 0
