"""``archdsl validate SPEC... [--set K=V ...]``: check specs without building weights.

Each file is loaded, resolved and validated, then compiled on the ``meta`` device (shapes and
component options checked, no memory allocated) and the memory ``archdsl build`` would need is
estimated there (over ``--max-memory``: an error). Prints ``ok: FILE (name)`` per good file; each
bad file gets one line on stderr; exit 2 if any failed.
"""
from __future__ import annotations

import argparse
import sys

from archdsl.cli.options import add_overrides_argument
from archdsl.errors import SpecError, printable


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("validate", help="check spec files (load, resolve, validate, compile on meta)",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML file(s)")
    add_overrides_argument(p, scope="every spec", example="mixer.heads=4")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size to check the model with (as archdsl build; the spec is unchanged)")
    p.add_argument("--no-compile", action="store_true", help="only load and validate the spec (no compiler)")
    return p


def check_image_size(image_size: int | None) -> None:
    """``--image-size`` is within 1..max_image_size (else a UserError naming the limit)."""
    from archdsl.cli import UserError
    from archdsl.language.limits import limit_hint, limits

    if image_size is None:
        return
    if image_size < 1:
        raise UserError(f"--image-size must be >= 1, got {image_size}")
    if image_size > limits().max_image_size:
        raise UserError(f"--image-size {image_size} is more than allowed {limit_hint('max_image_size')}")


def check_file(path: str, overrides=(), image_size=None, compile: bool = True):
    """Load + validate (+ compile on meta, and estimate the memory a build needs) one file;
    returns the spec or raises SpecError."""
    from archdsl.language import load_spec

    spec = load_spec(path, overrides)
    if compile:
        from archdsl.analysis.memory import check_memory
        from archdsl.cli.build import _size_location
        from archdsl.compiler import build_model

        model = build_model(spec, device="meta", image_size=image_size)
        try:
            check_memory(model, int(image_size or spec.image_size), where=_size_location(spec, image_size),
                         what="building this model (archdsl build)")
        except ValueError as e:
            if isinstance(e, SpecError):
                raise
            raise SpecError(str(e), **_size_location(spec, image_size)) from None
    return spec


def run(args: argparse.Namespace) -> int:
    check_image_size(args.image_size)
    failed = 0
    for path in args.specs:
        try:
            spec = check_file(path, args.overrides, args.image_size, compile=not args.no_compile)
        except SpecError as e:
            failed += 1
            print(printable(f"archdsl validate: error: {e}".replace("\n", " ")), file=sys.stderr)
            continue
        print(printable(f"ok: {path} ({spec.name})"))
    return 2 if failed else 0
