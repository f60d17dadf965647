"""``archdsl search``: multi-objective architecture search (accuracy x throughput) with Optuna.

Runs trials until the study holds --budget trials (COMPLETE + PRUNED + trials that failed on their
own; trials interrupted by Ctrl-C or left stale by a dead worker are run again), so the same command
resumes. Several processes given the same --storage URL and --study name share one study.
Results go to --out: trials.csv, pareto.csv, pareto.png, pareto/trial_N.yaml (each builds with
``archdsl build``), and the storage (default OUT/study.db, readable by optuna-dashboard).
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from archdsl.cli import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "search", help="architecture search over a YAML design space (Optuna; Pareto accuracy x throughput)",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=None, metavar="FILE",
                   help="search-space YAML (default: the packaged default space, search/default.yaml)")
    p.add_argument("--budget", type=int, default=50, metavar="N",
                   help="total trials the study should hold (default 50); rerunning adds only what is missing")
    p.add_argument("--objectives", default=None, metavar="LIST",
                   help="comma-separated: accuracy, throughput, params, macs (default: the space's, "
                        "accuracy,throughput); a single objective enables pruning")
    p.add_argument("--data", default=None, metavar="SRC",
                   help="default | farpairs | imagefolder:PATH | cifar10:PATH (default: the space's train.dataset)")
    p.add_argument("--epochs", type=int, default=None, metavar="E", help="training epochs per trial")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (training and throughput)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage: sqlite:///FILE, postgresql://..., mysql://..., journal:FILE "
                        "(default sqlite:///OUT/study.db)")
    p.add_argument("--study", default=None, metavar="NAME", help="study name (default: the space file's stem)")
    p.add_argument("--out", default="runs/search", metavar="DIR", help="results folder (default runs/search)")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="CPU threads per worker for training and timing (default 1: the proxy models are "
                        "tiny; run several workers to use more cores; 0 = torch's default)")
    p.add_argument("--timeout", type=float, default=None, metavar="SEC",
                   help="start no new trial after SEC seconds")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random"), default="tpe",
                   help="Optuna sampler (default tpe; multi-objective with constraints)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default=None,
                   help="pruner for single-objective searches (default median)")
    p.add_argument("--throughput-model", default=None, metavar="MODEL",
                   help="measure (default: time each model on --device) or roofline:NAME to predict images/s "
                        "for another device: a preset (rtx3090, a100, h100, h200) or a file from "
                        "`archdsl calibrate`")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="imagefolder data: leave out files that are not readable images, with a warning "
                        "(default: every file is checked before the search and a bad one is an error)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train every architecture N times (seeds S..S+N-1); accuracy = the mean, its std is "
                        "stored and drawn as error bars (default 1)")
    p.add_argument("--min-accuracy", type=float, default=None, metavar="A",
                   help="accuracy floor of the front, in [0, 1] (default: the space's accuracy_min, else "
                        "chance + 25%% of the way to 100%%; digits: 0.325)")
    p.add_argument("--fidelity", default=None, metavar="E1,E2,..",
                   help="successive halving over epochs, e.g. 1,3,9: every architecture at E1, the best third "
                        "(non-dominated sorting + crowding) promoted to E2, ...; the front is the top rung's")
    p.add_argument("--eta", type=int, default=3, help="successive halving: promote the best 1/eta (default 3)")
    p.add_argument("--check-fidelity", type=int, default=0, metavar="K",
                   help="after the search, re-train K trials (the front + spread over the ranking) at "
                        "--long-epochs with --fidelity-seeds seeds; writes fidelity.csv/.json/.png")
    p.add_argument("--long-epochs", type=int, default=15, metavar="E", help="epochs of the fidelity check (15)")
    p.add_argument("--fidelity-seeds", type=int, default=2, metavar="N",
                   help="seeds per re-trained trial in the fidelity check (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from archdsl.data import DataError
    from archdsl.search.runner import SearchOptions, run_search

    objectives = args.objectives.split(",") if args.objectives else None
    if args.budget < 0:
        raise UserError(f"--budget must be >= 0, got {args.budget}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    opts = SearchOptions(space=args.space, budget=args.budget, objectives=objectives, data=args.data,
                         epochs=args.epochs, device=args.device, storage=args.storage, study=args.study,
                         out_dir=args.out, seed=args.seed, timeout=args.timeout, sampler=args.sampler,
                         threads=args.threads or None,
                         pruner=args.pruner, progress=not args.no_progress,
                         throughput_model=args.throughput_model, skip_bad_images=args.skip_bad_images,
                         seeds=args.seeds, min_accuracy=args.min_accuracy, fidelity=args.fidelity, eta=args.eta,
                         check_fidelity=args.check_fidelity, long_epochs=args.long_epochs,
                         fidelity_seeds=args.fidelity_seeds)

    def on_sigterm(signum, frame):          # `kill`/timeout: stop like Ctrl-C (results are saved)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = run_search(opts)
    except DataError as e:
        raise UserError(str(e)) from None
    except ValueError as e:
        from archdsl.errors import SpecError

        if isinstance(e, SpecError):
            raise
        raise UserError(str(e)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_summary(summary, Console(file=sys.stdout, width=120))
    loop = summary["loop"]
    if loop is not None and loop.failed:
        print(f"archdsl search: {len(loop.failed)} trial(s) failed (see fail_reason in trials.csv): "
              f"{', '.join(map(str, loop.failed))}", file=sys.stderr)
    return 0


def _print_summary(summary: dict, console: Any) -> None:
    from archdsl.search import results

    names, study = summary["objectives"], summary["study"]
    console.print(results.results_table(summary["pareto"], names, title=(
        f"Pareto front of '{study.study_name}' ({len(summary['pareto'])} of "
        f"{sum(t.state.is_finished() for t in summary['trials'])} trials; objectives: {', '.join(names)})")))
    console.print(f"results in {summary['out']}/: trials.csv, pareto.csv, pareto.png, pareto/trial_N.yaml")
    from archdsl.search.runner import summary_lines

    for line in summary_lines(summary):
        console.print(line)
