"""``archdsl build-ext``: compile the C++ selective-scan kernel now (it is otherwise compiled on its
first use, ~40 s), so the first search trial or training step is not slowed or skewed by it.

Prints where the kernel is and exit 0, or why it could not be built and exit 1 (the models then
run the pure-PyTorch chunked scan). ``ARCHDSL_EXTENSIONS_DIR`` chooses the cache directory.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("build-ext", help="compile the C++ selective-scan kernel ahead of first use",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--json", action="store_true", help="print {\"kernel\", \"ok\", \"seconds\", \"error\"}")
    return p


def run(args: argparse.Namespace) -> int:
    from archdsl.ops.selective_scan import cpp_available, cpp_build_error

    t0 = time.perf_counter()
    ok = cpp_available()
    summary = {"kernel": "selective_scan cpp", "ok": ok, "seconds": round(time.perf_counter() - t0, 2),
               "error": cpp_build_error()}
    if args.json:
        print(json.dumps(summary))
    elif ok:
        print(f"selective_scan C++ kernel ready ({summary['seconds']:.1f} s)", file=sys.stderr)
    else:
        print(f"archdsl build-ext: the selective_scan C++ kernel could not be built: {summary['error']}",
              file=sys.stderr)
    return 0 if ok else 1
