"""``archdsl list [KIND] [--filter PATTERN] [--json]``: the registered components (timm's
``list_models``): mixers, blocks (Python-registered and the shipped YAML templates), stems,
downsamplers, heads, positional encodings and template primitives."""
from __future__ import annotations

import argparse
import json

from archdsl import registry


def _names(kind: str, pattern: str | None) -> list[str]:
    out = set(registry.names(kind, pattern))
    if kind == "block":  # shipped templates are blocks too
        import fnmatch

        from archdsl.language.templates import builtin_template_names

        out |= {n for n in builtin_template_names() if not pattern or fnmatch.fnmatch(n, pattern)}
    return sorted(out)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("list", help="list registered components (mixers, blocks, stems, ...)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("kind", nargs="?", choices=registry.KINDS, help="one kind (default: all)")
    p.add_argument("--filter", metavar="PATTERN", help="fnmatch pattern, e.g. '*attention*'")
    p.add_argument("--json", action="store_true", help="print one JSON object {kind: [names]}")
    return p


def run(args: argparse.Namespace) -> int:
    import archdsl.compiler  # noqa: F401  (lazy for `archdsl --help`: registers the built-ins)

    kinds = [args.kind] if args.kind else list(registry.KINDS)
    table = {k: _names(k, args.filter) for k in kinds}
    if args.json:
        print(json.dumps(table))
    else:
        for k, names in table.items():
            print(f"{k}: {', '.join(names) if names else '(none)'}")
    return 0
