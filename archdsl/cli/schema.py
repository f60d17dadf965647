"""``archdsl schema [--out FILE] [--template]``: print the JSON Schema of the spec language.

Editors use it through yaml-language-server: put
``# yaml-language-server: $schema=archdsl-spec.schema.json`` on the first line of a spec. The schema
names every registered mixer / stem / downsample / head / posenc (an enum per kind), checks each
``{type: NAME, ...}`` against NAME's constructor options, and forbids the other layout's fields.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("schema", help="print the JSON Schema of model specs (for editors)")
    p.add_argument("--out", default=None, metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--template", action="store_true",
                   help="the schema of a block template file (archdsl/blocks/*.yaml) instead")
    return p


def run(args: argparse.Namespace) -> int:
    from archdsl.compiler.component_schema import spec_json_schema  # registers the built-ins
    from archdsl.language.schema import template_json_schema

    schema = template_json_schema() if args.template else spec_json_schema()
    text = json.dumps(schema, indent=2) + "\n"
    if args.out:
        from archdsl.cli import UserError

        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write {args.out}: {e.strerror or e}") from None
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
