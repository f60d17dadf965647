"""Options several sub-commands share, written once so they read and behave the same everywhere."""
from __future__ import annotations

import argparse


def add_overrides_argument(p: argparse.ArgumentParser, *, scope: str = "the spec",
                           example: str = "stages.depths=[1,1,2,1]") -> None:
    """``--set KEY=VALUE`` (repeatable; a dotted path and a YAML value), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a field of {scope} (repeatable; dotted path = YAML value), e.g. --set {example}")
