"""``archdsl`` command line: one module per sub-command, each exposing

    add_parser(subparsers) -> argparse.ArgumentParser   # registers the sub-command
    run(args) -> int                                     # exit code

Exit codes: 0 ok, 1 runtime failure, 2 user/spec error (one line on stderr, no traceback).
``--json`` output goes to stdout as one object; logs and progress go to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from archdsl.errors import SpecError

# Sub-command modules, in the order `archdsl --help` lists them. A module that is not there yet
# (work in progress) is skipped, so the CLI never breaks on a partial checkout.
COMMANDS = ("build", "validate", "schema", "list", "bench", "report", "import_weights", "search", "calibrate",
            "train", "evaluate")


class UserError(Exception):
    """A user mistake that is not about spec text (bad path, bad flag combination): exit 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archdsl", description="Declarative vision-backbone builder and "
                                "architecture search (MLLA / linear attention / Mamba).")
    p.add_argument("--version", action="version", version=f"archdsl {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module(f"archdsl.cli.{name}")
        sp = mod.add_parser(sub)
        sp.set_defaults(_run=mod.run)
    return p


def _version() -> str:
    from archdsl import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (SpecError, UserError) as e:
        print(f"archdsl {args.command}: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archdsl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `archdsl build ... --json | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
