"""``archdsl list [KIND] [--filter PATTERN] [--json]``: the registered components (timm's
``list_models``): mixers, blocks (Python-registered and the shipped YAML templates), stems,
downsamplers, heads, positional encodings and template primitives.
``archdsl list --options KIND NAME``: one component's options (from its constructor's signature, or
a template's params) with their JSON types and defaults."""
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
    p.add_argument("--options", metavar="NAME", help="print the options of component NAME of KIND")
    p.add_argument("--markdown", action="store_true",
                   help="print every component with its options as Markdown (docs/components.md)")
    return p


def _print_options(kind: str, name: str, as_json: bool) -> int:
    from archdsl.cli import UserError
    from archdsl.compiler.component_schema import component_options, option_type_text
    from archdsl.errors import SpecError

    if kind == "primitive":
        raise UserError("primitives take their argument in the template node; see docs/language.md")
    try:
        opts = component_options(kind, name)
    except SpecError as e:
        raise UserError(e.message) from None
    if as_json:
        print(json.dumps({"kind": kind, "name": name, "options": opts}, default=repr))
        return 0
    print(f"{kind} {name}:" + ("" if opts else " (no options)"))
    for o in opts:
        typ = option_type_text(o["schema"])
        default = "required" if o["required"] else f"default {o['default']!r}"
        print(f"  {o['name']}: {typ} ({default})")
    return 0


def run(args: argparse.Namespace) -> int:
    import archdsl.compiler  # noqa: F401  (lazy for `archdsl --help`: registers the built-ins)

    if args.markdown:
        from archdsl.compiler.component_schema import components_markdown

        print(components_markdown(), end="")
        return 0
    if args.options:
        if not args.kind:
            from archdsl.cli import UserError

            raise UserError("--options needs a KIND: archdsl list --options NAME KIND, e.g. list mixer --options linear_attention")
        return _print_options(args.kind, args.options, args.json)
    kinds = [args.kind] if args.kind else list(registry.KINDS)
    table = {k: _names(k, args.filter) for k in kinds}
    if args.json:
        print(json.dumps(table))
    else:
        for k, names in table.items():
            print(f"{k}: {', '.join(names) if names else '(none)'}")
    return 0
