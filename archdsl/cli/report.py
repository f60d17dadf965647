"""``archdsl report SPEC_OR_DIR... [--bench] [--json] [--markdown FILE] [--csv FILE]``

One row per spec: parameters (M) and GMACs at the spec's image size (multiply-accumulates,
``archdsl.analysis.summary.count_macs``: torch's FlopCounterMode / 2, run on the meta device, where
it also counts scaled_dot_product_attention, whose CPU kernel it reports as 0 FLOPs; on the CPU only
when a model cannot run on meta); for specs whose mixer runs a
recurrent scan (forget gate, selective SSM) also ``gmacs_scan``: plus the scan's 9·L·D·N per
direction, the convention of VMamba's ``flops_selective_scan_ref`` that fvcore-based papers add
(FlopCounterMode does not see the elementwise recurrence); a spec's ``meta.macs_convention: {scan:
localmamba, uncounted: [GLOB, ...]}`` counts it as the counter its paper's figure came from
(``archdsl.analysis.scan_macs``: the scan convention, and the modules that counter leaves out).
With ``--bench``: images/s, the median
latency with its p20 / p80 spread (see ``archdsl bench`` for the flags) and throughput relative to
MLLA-T (the row named ``mlla_t``, all rows measured in one run; the first row when there is none).
The paper's numbers come from each spec's ``meta:`` (``paper: {table, position, row, params_m,
gmacs, throughput, latency_ms_3090, top1}``, ``official: {params, gmacs}``) and are printed beside
ours with a tolerance check: the official parameter count exactly and MACs within 1% of the
official GMACs (2% of the paper's when the official code's is not given); a paper row alone
(the Table 1/2 ablation) within ±1M params and ±0.15 GMACs.
A directory stands for its ``*.yaml`` files (paper rows first, by ``meta.paper.table`` and
``position``).
Files are written atomically (temporary file, then ``os.replace``).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from archdsl.cli import UserError
from archdsl.cli.options import add_overrides_argument
from archdsl.files import write_atomic

PARAMS_TOL_M = 1.0             # a paper row without official count: within ±1M parameters
GMACS_TOL = 0.15               # ... and ±0.15 GMACs
OFFICIAL_MACS_REL_TOL = 0.01   # an official GMACs count (meta.official.gmacs): within 1%
PAPER_MACS_REL_TOL = 0.02      # an official parameter count without official GMACs: paper GMACs within 2%
REFERENCE = "mlla_t"           # --bench: throughput relative to this row when present (else the first)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from archdsl.cli.bench import add_bench_arguments

    p = sub.add_parser("report", help="params / GMACs (/ throughput) table of specs, with the paper's numbers",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR", help="spec files or folders of specs")
    add_overrides_argument(p, scope="every spec")
    p.add_argument("--bench", action="store_true", help="also measure throughput (images/s)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown table")
    p.add_argument("--csv", metavar="FILE", help="write a CSV table")
    add_bench_arguments(p)
    return p


def expand_paths(paths: List[str]) -> List[str]:
    """Files as given; a folder -> its ``*.yaml`` (recursively), rows of the paper first, in the
    order of ``meta.paper.table`` / ``meta.paper.position``."""
    out: List[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(str(f) for f in path.rglob("*.yaml"))
            if not files:
                raise UserError(f"no *.yaml spec files in folder {p}")
            out.extend(sorted(files, key=_paper_rank))
        elif path.is_file():
            out.append(str(path))
        else:
            raise UserError(f"no such spec file or folder: {p}")
    return out


def _paper_rank(path: str) -> tuple:
    from archdsl.language import load_spec

    paper = (load_spec(path).meta or {}).get("paper") or {}
    if "table" in paper:
        return (0, str(paper["table"]), int(paper.get("position", 0)), path)
    return (1, "", 0, path)


def paper_columns(meta: Dict[str, Any] | None) -> Dict[str, Any]:
    """The report's paper / official columns from a spec's ``meta:`` (``paper: {table, row,
    params_m, gmacs, throughput, top1, latency_ms_3090}``, ``official: {params, gmacs}``)."""
    paper = (meta or {}).get("paper") or {}
    official = (meta or {}).get("official") or {}
    cols = {"paper_table": paper.get("table"), "paper_row": paper.get("row"),
            "paper_params_m": paper.get("params_m"), "paper_gmacs": paper.get("gmacs"),
            "paper_throughput": paper.get("throughput"), "paper_latency_ms": paper.get("latency_ms_3090"),
            "paper_top1": paper.get("top1"), "official_params": official.get("params"),
            "official_gmacs": official.get("gmacs")}
    return {k: v for k, v in cols.items() if v is not None}


def tolerance_check(row: Dict[str, Any]) -> str | None:
    """``ok`` / ``off`` against the spec's meta: the official parameter count exactly and MACs within
    1% of the official GMACs (or 2% of the paper's); a paper row alone within ±1M and ±0.15 GMACs."""
    g = row["gmacs_scan"] if row.get("gmacs_scan") is not None else row["gmacs"]
    if "official_params" in row:
        target = row.get("official_gmacs", row.get("paper_gmacs"))
        tol = OFFICIAL_MACS_REL_TOL if "official_gmacs" in row else PAPER_MACS_REL_TOL
        macs_ok = target is None or abs(g - target) <= tol * target
        return "ok" if row["params"] == row["official_params"] and macs_ok else "off"
    if "paper_params_m" in row and "paper_gmacs" in row:
        ok = abs(row["params_m"] - row["paper_params_m"]) <= PARAMS_TOL_M and abs(g - row["paper_gmacs"]) <= GMACS_TOL + 1e-9
        return "ok" if ok else "off"
    return None


def measure_row(path: str, overrides: List[str]) -> Dict[str, Any]:
    """Params / MACs of one spec and the paper's numbers (its ``meta:``) beside them."""
    from archdsl import build_model, load_spec
    from archdsl.analysis.scan_macs import count_macs_with_scan
    from archdsl.analysis.summary import count_params

    spec = load_spec(path, overrides)
    size = int(spec.image_size)
    convention = (spec.meta or {}).get("macs_convention") or {}
    scan_args = (convention.get("scan", "vmamba"), tuple(convention.get("uncounted", ())))
    try:  # shapes only: fast, no weights, and FlopCounterMode sees SDPA (its CPU kernel counts 0)
        model = build_model(spec, device="meta")
        macs, extra = count_macs_with_scan(model, size, *scan_args)
        counted_on = "meta"
    except (RuntimeError, NotImplementedError):  # e.g. a scan that reads a value (.item()) on the way
        model = build_model(spec)
        macs, extra = count_macs_with_scan(model, size, *scan_args)
        counted_on = "cpu"
    params = count_params(model)
    row: Dict[str, Any] = {"spec": path, "name": spec.name, "image_size": size, "params": params,
                           "params_m": params / 1e6, "gmacs": macs / 1e9,
                           "gmacs_scan": (macs + extra) / 1e9 if extra else None,
                           "macs_counted_on": counted_on, **paper_columns(spec.meta)}
    if convention:
        row["macs_convention"] = scan_args[0]
    check = tolerance_check(row)
    if check is not None:
        row["check"] = check
    return row


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


COLUMNS = [("name", "spec"), ("params_m", "params (M)"), ("gmacs", "GMACs"), ("gmacs_scan", "GMACs +scan"), ("macs_convention", "+scan as"),
           ("paper_row", "paper row"), ("paper_params_m", "paper params (M)"), ("paper_gmacs", "paper GMACs"),
           ("official_params", "official-code params"),
           ("official_gmacs", "official-code GMACs"), ("paper_throughput", "paper img/s (3090)"),
           ("paper_latency_ms", "paper ms (3090)"), ("paper_top1", "paper top-1"), ("check", "within tol."),
           ("images_per_s", "img/s (here)"), ("latency_ms", "ms (here)"), ("latency_p20_ms", "p20 ms"),
           ("latency_p80_ms", "p80 ms"), ("relative", "rel. to ref.")]


def _present(rows: List[Dict[str, Any]]) -> List[tuple]:
    return [(k, h) for k, h in COLUMNS if any(r.get(k) is not None for r in rows)]


def to_markdown(rows: List[Dict[str, Any]], settings: Optional[Dict[str, Any]]) -> str:
    cols = _present(rows)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k), 3 if "gmacs" in k else 2) for k, _ in cols) + " |")
    if settings:
        lines.append("")
        lines.append("Throughput: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "\n".join(lines) + "\n"


def to_csv(rows: List[Dict[str, Any]]) -> str:
    keys: List[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


def _print_table(rows: List[Dict[str, Any]], settings: Optional[Dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = _present(rows)
    t = Table(title=f"archdsl report ({rows[0]['image_size']}x{rows[0]['image_size']}, MACs at batch 1)")
    for _, h in cols:
        t.add_column(h, justify="left" if h in ("spec", "paper row", "within tol.") else "right")
    for r in rows:
        t.add_row(*[_fmt(r.get(k), 3 if "gmacs" in k else 2) for k, _ in cols])
    Console(width=200).print(t)
    if settings:
        print("throughput settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))


def run(args: argparse.Namespace) -> int:
    paths = expand_paths(args.paths)
    rows = [measure_row(p, args.overrides) for p in paths]
    settings = None
    if args.bench:
        from archdsl.cli.bench import bench_specs, check_bench_args

        check_bench_args(args)
        results = bench_specs(paths, args, args.overrides)
        ref = next((res for row, res in zip(rows, results) if row["name"] == REFERENCE), results[0])
        first = ref.get("images_per_s")
        for row, res in zip(rows, results):
            row["images_per_s"] = res.get("images_per_s")
            row["latency_ms"] = res.get("latency_ms")
            row["latency_p20_ms"], row["latency_p80_ms"] = res.get("p20_ms"), res.get("p80_ms")
            row["bench_error"] = res.get("error")
            row["relative"] = (res["images_per_s"] / first) if first and res.get("images_per_s") else None
        keys = ("batch_size", "image_size", "device", "dtype", "channels_last", "compile", "mode", "num_threads",
                "warmup", "iters", "min_time", "torch")
        settings = {k: results[0][k] for k in keys}
        settings["relative_to"] = rows[results.index(ref)]["name"]
    if args.markdown:
        write_atomic(args.markdown, to_markdown(rows, settings))
    if args.csv:
        write_atomic(args.csv, to_csv(rows))
    if args.json:
        print(json.dumps({"rows": rows, "bench_settings": settings,
                          "tolerances": {"params_m": PARAMS_TOL_M, "gmacs": GMACS_TOL,
                                         "official_macs_rel": OFFICIAL_MACS_REL_TOL}}))
    else:
        _print_table(rows, settings)
    return 1 if args.bench and any(r.get("bench_error") for r in rows) else 0
