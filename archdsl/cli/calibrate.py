"""``archdsl calibrate --out PROFILE.yaml``: measure this machine's roofline profile (matrix-product
FLOP/s per dtype, copy bandwidth, per-op overhead) for ``archdsl search --throughput-model
roofline:PROFILE.yaml`` and ``archdsl.analysis.roofline``."""
from __future__ import annotations

import argparse
import sys

from archdsl.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("calibrate", help="measure this machine's roofline profile (for --throughput-model)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="FILE", help="the profile to write (YAML)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads while measuring: use what the search uses (default 1, as its --threads)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated (float32 is required)")
    p.add_argument("--gemm-n", type=int, default=1024, help="side of the timed matrix product (default 1024)")
    p.add_argument("--copy-mib", type=float, default=64.0, help="size of the timed copy in MiB (default 64)")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per measurement (default 0.3)")
    p.add_argument("--name", default=None, help="the profile's name (default calibrated-<device>)")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from archdsl.analysis.calibrate import calibrate
    from archdsl.analysis.roofline import save_profile

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch.cuda.is_available() is False")
    if args.threads < 1 or args.gemm_n < 16 or args.copy_mib <= 0 or not args.min_time > 0:
        raise UserError("need --threads >= 1, --gemm-n >= 16, --copy-mib > 0 and --min-time > 0")
    torch.set_num_threads(args.threads)
    try:
        prof = calibrate(args.device, dtypes=tuple(d.strip() for d in args.dtypes.split(",") if d.strip()),
                         gemm_n=args.gemm_n, copy_mib=args.copy_mib, min_run_time=args.min_time, name=args.name)
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        save_profile(prof, args.out)
    except OSError as e:
        raise UserError(f"cannot write {args.out}: {e.strerror or e}") from None
    flops = ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in prof.peak_flops.items())
    print(f"{args.out}: {flops}; bandwidth {prof.bandwidth / 1e9:.1f} GB/s; {prof.launch_s * 1e6:.1f} us per op "
          f"({prof.source})", file=sys.stderr)
    return 0
