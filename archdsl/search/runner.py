"""``run_search``: the whole search as one call (the CLI is a thin wrapper around it).

    from archdsl.search import run_search
    summary = run_search(space="search/default.yaml", budget=50, out_dir="runs/search")
    summary["pareto"]          # FrozenTrials on the Pareto front
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna

from archdsl.data import load_data
from archdsl.errors import SpecError
from archdsl.search import results
from archdsl.search import study as st
from archdsl.search.objective import TrialContext, run_trial
from archdsl.search.space import OBJECTIVES, SearchSpace, default_space_path, load_space
from archdsl.train import TrainConfig

__all__ = ["run_search", "SearchOptions", "resolve_device"]


@dataclasses.dataclass
class SearchOptions:
    """Everything ``archdsl search`` can be told (None = take it from the space file / default)."""

    space: str | os.PathLike | None = None      # None: the packaged default space
    budget: int = 50
    objectives: Sequence[str] | None = None     # e.g. ("accuracy", "throughput"); None: the space's
    data: str | None = None                     # default | imagefolder:PATH | cifar10:PATH
    epochs: int | None = None
    device: str = "auto"
    storage: str | None = None                  # None: sqlite:///OUT/study.db
    study: str | None = None                    # None: the space file's stem
    out_dir: str | os.PathLike = "runs/search"
    seed: int = 0
    timeout: float | None = None                # seconds; no new trial starts after this
    threads: int | None = 1                     # CPU intra-op threads (None: torch's default)
    sampler: str = "tpe"                        # tpe | nsga2 | random
    pruner: str | None = None                   # median | hyperband | none (single objective only)
    progress: bool = True


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch.cuda.is_available() is False")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device '{device}'; expected auto, cpu or cuda")
    return device


def _objectives(opts: SearchOptions, space: SearchSpace) -> tuple[list[str], list[str]]:
    if opts.objectives:
        names = [o.strip() for o in opts.objectives if o.strip()]
        for n in names:
            if n not in OBJECTIVES:
                raise ValueError(f"unknown objective '{n}'; expected some of {', '.join(OBJECTIVES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives list a name twice: {names}")
        dirs = [space.objectives.get(n, OBJECTIVES[n]) for n in names]
        return names, dirs
    return list(space.objectives), list(space.objectives.values())


def _train_config(space: SearchSpace, opts: SearchOptions):
    cfg: dict[str, Any] = {}
    for k, v in space.train.items():
        if k == "dataset":
            continue
        if isinstance(v, str) and k not in ("flip",):   # YAML 1.1 reads 2e-3 as a string
            try:
                v = float(v)
            except ValueError:
                raise SpecError(f"train.{k} must be a number, got {v!r}", file=space.file,
                                path=f"train.{k}") from None
        if k in ("epochs", "batch_size", "crop_padding", "seed", "max_steps_per_epoch") and v is not None:
            if float(v) != int(v):
                raise SpecError(f"train.{k} must be an integer, got {v!r}", file=space.file, path=f"train.{k}")
            v = int(v)
        cfg[k] = v
    if opts.epochs is not None:
        cfg["epochs"] = int(opts.epochs)
    cfg.setdefault("seed", opts.seed)
    return TrainConfig(**cfg)


def _sampler_seed(opts: SearchOptions, shared: bool) -> int:
    """Same seed -> same trials for a local study; workers sharing a server study each mix in their
    host and pid, so two workers started with the same --seed do not sample the same points."""
    if not shared:
        return opts.seed
    return zlib.crc32(f"{opts.seed}:{socket.gethostname()}:{os.getpid()}".encode())


def run_search(opts: SearchOptions | None = None, *, log: Callable[[str], None] | None = None,
               console: Any = None, build: Callable | None = None, **kwargs: Any) -> dict:
    """Run (or resume) a search; returns ``{"study", "pareto", "trials", "files", "loop", "seconds"}``.

    Raises :class:`SpecError` for a bad space file, ``archdsl.data.DataError`` for a bad data source,
    ``ValueError`` for bad options. ``KeyboardInterrupt`` propagates after the results are written.
    The caller's torch thread count is restored on return.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        return _run_search(opts, log=log, console=console, build=build, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _run_search(opts: SearchOptions | None, *, log: Callable[[str], None] | None, console: Any,
                build: Callable | None, **kwargs: Any) -> dict:
    opts = dataclasses.replace(opts or SearchOptions(), **kwargs)
    log = log or (lambda s: print(s, file=sys.stderr))
    if opts.budget < 0:
        raise ValueError(f"--budget must be >= 0, got {opts.budget}")
    space_path = Path(opts.space) if opts.space else default_space_path()
    space = load_space(space_path)
    names, directions = _objectives(opts, space)
    cfg = _train_config(space, opts)
    device = resolve_device(opts.device)
    if device == "cpu" and opts.threads is not None:
        import torch

        if opts.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {opts.threads}")
        # Proxy models are tiny: intra-op threads gain little, and on a busy machine spinning OpenMP
        # threads slowed training 10x or more here. Run several workers for parallelism instead.
        torch.set_num_threads(opts.threads)
    source = opts.data or str(space.train.get("dataset", "default"))
    image_size = int(space.base.get("image_size", 32))
    data = load_data(source, image_size=image_size)
    spec_classes = space.base.get("num_classes")
    if spec_classes is not None and spec_classes != data.num_classes:
        space.base["num_classes"] = data.num_classes
        log(f"note: num_classes set to {data.num_classes} (the data set's), base spec said {spec_classes}")

    single = len(names) == 1
    if opts.pruner not in (None, "none") and not single:
        raise ValueError(f"--pruner {opts.pruner} needs a single objective (--objectives accuracy); "
                         f"Optuna prunes only single-objective studies")
    pruner_name = (opts.pruner or "median") if single else "none"
    if single and names[0] != "accuracy" and pruner_name != "none":
        pruner_name = "none"          # per-epoch reports are accuracies

    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = opts.storage or st.local_storage_url(out)
    shared = opts.storage is not None and not opts.storage.startswith(("sqlite", "journal:"))
    storage = st.make_storage(url)
    study_name = opts.study or space_path.stem
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats are used with ask/tell on purpose (study.py records them); the API is experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    sampler = st.make_sampler(opts.sampler, seed=_sampler_seed(opts, shared), n_objectives=len(names),
                              n_constraints=len(space.constraints), budget=opts.budget)
    pruner = st.make_pruner(pruner_name, epochs=cfg.epochs)
    study = st.open_study(storage, study_name, directions, sampler, pruner)
    if not study.user_attrs.get("objectives"):
        study.set_user_attr("objectives", names)
    elif study.user_attrs["objectives"] != names:
        raise ValueError(f"study '{study_name}' was run with objectives {study.user_attrs['objectives']}, "
                         f"not {names}; use another --study name")
    ctx = TrialContext(space=space, objectives=names, data=data, train=cfg, device=device,
                       throughput=dict(space.throughput), prune=single and pruner_name != "none", build=build)
    before = st.budget_count(study)
    log(f"archdsl search: study '{study_name}' in {url.split('@')[-1]} -- {before}/{opts.budget} trials "
        f"counted; objectives {', '.join(f'{n} ({d})' for n, d in zip(names, directions))}; sampler "
        f"{opts.sampler}; data {data.describe()}; {cfg.epochs} epoch(s) per trial on {device}"
        + (f" ({_threads()} thread(s))" if device == "cpu" else ""))

    bar = _progress(opts, before)
    t0 = time.perf_counter()

    def on_trial_end(frozen: Any) -> None:
        if bar is None:
            return
        trials = study.get_trials(deepcopy=False)
        bar.n = min(opts.budget, sum(st.counts_toward_budget(t) for t in trials if t.state.is_finished()))
        front = results.pareto_front(trials, directions)
        accs = [t.user_attrs.get("accuracy") for t in front if t.user_attrs.get("accuracy") is not None]
        bar.set_postfix_str(f"last #{frozen.number} {frozen.state.name.lower()}, best acc "
                            f"{max(accs) * 100:.1f}%, front {len(front)}" if accs else
                            f"last #{frozen.number} {frozen.state.name.lower()}")
        bar.refresh()

    loop = None
    try:
        loop = st.run_workers_loop(study, storage=storage, url=url, budget=opts.budget,
                                   objective=lambda trial: run_trial(trial, ctx), timeout=opts.timeout,
                                   on_trial_end=on_trial_end, log=log)
    finally:
        if bar is not None:
            bar.close()
        summary = results.export_results(study, out, names)
        summary.update(study=study, loop=loop, seconds=time.perf_counter() - t0, objectives=names,
                       directions=directions, url=url)
        if console is not None:
            console.print(results.results_table(summary["pareto"], names, title=(
                f"Pareto front of '{study_name}' ({len(summary['pareto'])} of "
                f"{sum(t.state.is_finished() for t in summary['trials'])} trials; objectives: "
                f"{', '.join(names)})")))
            console.print(f"results in {out}/: trials.csv, pareto.csv, pareto.png, pareto/trial_N.yaml")
    return summary


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _progress(opts: SearchOptions, initial: int) -> Any:
    if not opts.progress or opts.budget == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=opts.budget, initial=min(initial, opts.budget), file=sys.stderr, desc="search",
                unit="trial", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                "[{elapsed}<{remaining}]{postfix}")
