"""``archdsl`` command line: one module per sub-command, each exposing

    add_parser(subparsers) -> argparse.ArgumentParser   # registers the sub-command
    run(args) -> int                                     # exit code

Exit codes: 0 ok, 1 runtime failure, 2 user/spec error (one line on stderr, no traceback).
``--json`` output goes to stdout as one object; logs and progress go to stderr.

Every sub-command also takes ``--allow-plugins`` (a spec's ``plugins:`` may be imported),
``--limit NAME=VALUE`` and ``--max-memory SIZE`` (docs/security.md); they set the matching
``ARCHDSL_*`` environment variables, so worker processes inherit them. Modules are imported lazily:
``archdsl --help`` and errors in spec text do not import torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from archdsl.errors import SpecError, printable

# Sub-command modules, in the order `archdsl --help` lists them.
COMMANDS = ("build", "validate", "schema", "list", "bench", "report", "import_weights", "export", "search",
            "calibrate", "build_ext", "train", "evaluate")


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
        _add_common(sp)
        sp.set_defaults(_run=mod.run)
    return p


def _add_common(p: argparse.ArgumentParser) -> None:
    """The safety options every sub-command takes (docs/security.md)."""
    g = p.add_argument_group("safety (docs/security.md)")
    g.add_argument("--allow-plugins", action="store_true",
                   help="let specs import the Python modules their plugins: names (runs their code; "
                        "also ARCHDSL_ALLOW_PLUGINS=1)")
    g.add_argument("--limit", dest="limits", action="append", default=[], metavar="NAME=VALUE",
                   help="raise or lower one bound, e.g. --limit max_stage_depth=1000 (repeatable)")
    g.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory build may allocate, e.g. 32G (default: half of this machine's memory)")


def _apply_common(args: argparse.Namespace) -> None:
    from archdsl.language.limits import PLUGINS_ENV, set_limit

    if getattr(args, "allow_plugins", False):
        os.environ[PLUGINS_ENV] = "1"
    for text in getattr(args, "limits", None) or []:
        set_limit(text)
    if getattr(args, "max_memory", None) is not None:
        set_limit(f"max_memory={args.max_memory}")


def _version() -> str:
    from archdsl import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _apply_common(args)
        return int(args._run(args) or 0)
    except (SpecError, UserError) as e:
        print(printable(f"archdsl {args.command}: error: {e}".replace("\n", " ")), file=sys.stderr)
        return 2
    except RecursionError:  # a last guard: the loaders bound nesting, so this means a missed bound
        print(f"archdsl {args.command}: error: input nested too deeply (limit max_yaml_depth; see "
              f"docs/security.md)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if argv is None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is exiting: more Ctrl-C's keep it 130
        print(f"archdsl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `archdsl build ... --json | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
