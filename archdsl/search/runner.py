"""``run_search``: the whole search as one call (the CLI is a thin wrapper around it).

    from archdsl.search import run_search
    summary = run_search(space="search/default.yaml", budget=50, out_dir="runs/search")
    summary["pareto"]          # FrozenTrials on the Pareto front
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch
from tqdm import tqdm

from archdsl.analysis.roofline import DeviceProfile, load_profile
from archdsl.data import load_data, parse_preprocess
from archdsl.errors import SpecError
from archdsl.search import halving, results
from archdsl.search import study as st
from archdsl.search.faults import StorageError, deferred_interrupts, storage_errors
from archdsl.search.fidelity import check_fidelity
from archdsl.search.objective import TrialContext, run_trial
from archdsl.search.space import OBJECTIVES, SearchSpace, default_space_path, load_space
from archdsl.train import Recipe, proxy_recipe

__all__ = ["run_search", "prepare_search", "search_loop", "after_search", "summary_lines", "SearchOptions",
           "SearchSetup", "resolve_device", "default_min_accuracy"]

FLOOR_MARGIN = 0.25        # default floor: a quarter of the way from chance to 100 %


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
    throughput_model: str | None = None         # None/"measure": time on --device; "roofline:NAME|FILE": predict
    progress: bool = True
    skip_bad_images: bool = False               # imagefolder: leave unreadable files out (else an error)
    seeds: int = 1                              # trainings per architecture; accuracy = their mean
    min_accuracy: float | None = None           # the front's accuracy floor (None: chance + a margin)
    fidelity: str | Sequence[int] | None = None  # successive halving rungs in epochs, e.g. "1,3,9"
    eta: int = 3                                # successive halving: the best 1/eta go up a rung
    check_fidelity: int = 0                     # re-train this many trials at long_epochs (0: no check)
    long_epochs: int = 15
    fidelity_seeds: int = 2                     # seeds per trial of the fidelity check


def default_min_accuracy(num_classes: int) -> float:
    """The front's default accuracy floor: chance + 25 % of the way to 100 % (digits: 32.5 %)."""
    chance = 1.0 / max(1, num_classes)
    return chance + FLOOR_MARGIN * (1.0 - chance)


def _check_options(opts: SearchOptions) -> list[int] | None:
    """Validate the multi-fidelity / seeds / floor options; returns the rungs (or None)."""
    if opts.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {opts.seeds}")
    if opts.min_accuracy is not None and not 0.0 <= opts.min_accuracy <= 1.0:
        raise ValueError(f"--min-accuracy must be in [0, 1], got {opts.min_accuracy}")
    if opts.check_fidelity < 0:
        raise ValueError(f"--check-fidelity must be >= 0, got {opts.check_fidelity}")
    if opts.fidelity is None:
        return None
    if opts.epochs is not None:
        raise ValueError("--epochs and --fidelity both set the epochs; give one of them")
    if opts.eta < 2:
        raise ValueError(f"--eta must be >= 2, got {opts.eta}")
    return halving.parse_rungs(opts.fidelity)


def _floor(space: SearchSpace, names: list[str], opts: SearchOptions, num_classes: int) -> float | None:
    """The front's accuracy floor: ``--min-accuracy``, else the space's ``accuracy_min`` constraint,
    else :func:`default_min_accuracy`. It filters the exported front (a trial under it cannot dominate
    one above it, so this is the front of the trials above the floor); the sampler is not told, and a
    resumed study can be exported again with another floor."""
    if "accuracy" not in names:
        return None
    if opts.min_accuracy is not None:
        return float(opts.min_accuracy)
    return float(space.constraints.get("accuracy_min", default_min_accuracy(num_classes)))


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a user error."""
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


def _train_config(space: SearchSpace, opts: SearchOptions) -> Recipe:
    """The proxy recipe with the space's ``train:`` section (keys checked against the recipe's fields
    when the space was loaded) and ``--epochs`` / ``--seed`` applied; a bad value is a SpecError at
    ``train.<field>`` of the space file."""
    cfg = {k: v for k, v in space.train.items() if k != "dataset"}
    if opts.epochs is not None:
        cfg["epochs"] = int(opts.epochs)
    cfg.setdefault("seed", opts.seed)
    try:
        return proxy_recipe(**cfg)
    except SpecError as e:
        raise SpecError(e.message, file=space.file, path=f"train.{e.path}" if e.path else "train") from None


def _sampler_seed(seed: int, worker: int) -> int:
    """The study's first worker samples with ``seed`` (same seed -> same trials for a new study); the
    next ones (other workers, resumed runs: see ``claim_worker_number``) mix in their number."""
    return seed if worker == 0 else zlib.crc32(f"{seed}:{worker}".encode())


def run_search(opts: SearchOptions | None = None, *, log: Callable[[str], None] | None = None,
               build: Callable | None = None, **kwargs: Any) -> dict:
    """Run (or resume) a search; returns ``{"study", "pareto", "trials", "files", "loop", "seconds",
    "objectives", "directions", "url"}`` (the CLI prints the table from it).

    Raises :class:`SpecError` for a bad space file, ``archdsl.data.DataError`` for a bad data source,
    ``ValueError`` for bad options. ``KeyboardInterrupt`` propagates after the results are written.
    The caller's torch thread count is restored on return.
    """
    opts = dataclasses.replace(opts or SearchOptions(), **kwargs)
    log = log or (lambda s: print(s, file=sys.stderr))
    threads = torch.get_num_threads()
    try:
        setup = prepare_search(opts, log=log, build=build)
        return after_search(search_loop(setup, opts, log=log), setup, opts, log=log)
    finally:
        torch.set_num_threads(threads)


@dataclasses.dataclass
class SearchSetup:
    """Everything a search loop needs, built once by :func:`prepare_search`."""

    study: optuna.Study
    storage: Any
    url: str
    ctx: TrialContext
    names: list[str]
    directions: list[str]
    out: Path
    rungs: list[int] | None = None             # --fidelity: epochs per rung
    floor: float | None = None                 # the front's accuracy floor


def prepare_search(opts: SearchOptions, *, log: Callable[[str], None], build: Callable | None = None) -> SearchSetup:
    """Load the space and the data, open (or create) the study; logs one header line."""
    if opts.budget < 0:
        raise ValueError(f"--budget must be >= 0, got {opts.budget}")
    if opts.timeout is not None and not opts.timeout >= 0:          # NaN compares false
        raise ValueError(f"--timeout must be a number of seconds >= 0, got {opts.timeout}")
    rungs = _check_options(opts)
    space_path = Path(opts.space) if opts.space else default_space_path()
    space = load_space(space_path)
    names, directions = _objectives(opts, space)
    cfg = _train_config(space, opts)
    device = resolve_device(opts.device)
    if device == "cpu" and opts.threads is not None:
        if opts.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {opts.threads}")
        # Proxy models are tiny: intra-op threads gain little, and on a busy machine spinning OpenMP
        # threads slowed training 10x or more here. Run several workers for parallelism instead.
        torch.set_num_threads(opts.threads)
    data = load_data(opts.data or str(space.train.get("dataset", "default")),
                     image_size=int(space.base.get("image_size", 32)), skip_bad_images=opts.skip_bad_images,
                     preprocess=parse_preprocess(space.data) if space.data else None)
    for path, reason in data.skipped:
        log(f"warning: {path}: not a readable image ({reason}); skipped (--skip-bad-images)")
    spec_classes = space.base.get("num_classes")
    if spec_classes is not None and spec_classes != data.num_classes:
        space.base["num_classes"] = data.num_classes
        log(f"note: num_classes set to {data.num_classes} (the data set's), base spec said {spec_classes}")
    floor = _floor(space, names, opts, data.num_classes)
    pruner_name = _pruner_name(opts, names)
    out = _out_dir(opts.out_dir)
    url = opts.storage or st.local_storage_url(out)
    study_name = opts.study or space_path.stem
    storage, study, before = _open_study(opts, url, study_name, directions, pruner=st.make_pruner(
        pruner_name, epochs=cfg.epochs), record=_study_record(names, data, cfg, space, opts),
        n_constraints=len(space.constraints))
    if study.metric_names is None:
        study.set_metric_names(names)             # optuna-dashboard shows the objectives by name
    ctx = TrialContext(space=space, objectives=names, data=data, train=cfg, device=device,
                       throughput=dict(space.throughput), throughput_model=_throughput_model(opts),
                       prune=pruner_name != "none", build=build, seeds=opts.seeds, rungs=rungs)
    log(f"archdsl search: study '{study_name}' in {url.split('@')[-1]} -- {before}/{opts.budget} "
        f"trials counted; objectives {', '.join(f'{n} ({d})' for n, d in zip(names, directions))}; sampler "
        f"{opts.sampler}; data {data.describe()}; augmentation: random crop {cfg.crop_padding} px, horizontal "
        f"flip {'on' if (data.flip if cfg.hflip is None else cfg.hflip) else 'off'} (train.crop_padding, train.hflip); "
        + (f"successive halving over {rungs} epochs (eta {opts.eta})" if rungs else f"{cfg.epochs} epoch(s) per trial")
        + (f" x {opts.seeds} seeds" if opts.seeds > 1 else "") + f" on {device}"
        + (f"; throughput predicted for {ctx.throughput_model.name} (roofline)" if ctx.throughput_model else "")
        + (f" ({torch.get_num_threads()} thread(s))" if device == "cpu" else "")
        + (f"; accuracy floor {floor * 100:.1f}%" if floor is not None else ""))
    return SearchSetup(study=study, storage=storage, url=url, ctx=ctx, names=names, directions=directions,
                       out=out, rungs=rungs, floor=floor)


def _throughput_model(opts: SearchOptions) -> DeviceProfile | None:
    """``--throughput-model``: None / ``measure`` (time each model on ``--device``) or
    ``roofline:NAME`` (a preset such as rtx3090, a100, h100, h200, or a file from ``archdsl calibrate``)."""
    spec = opts.throughput_model
    if spec in (None, "", "measure"):
        return None
    kind, _, name = spec.partition(":")
    if kind != "roofline" or not name:
        raise ValueError(f"--throughput-model must be 'measure' or 'roofline:NAME', got {spec!r}")
    return load_profile(name)


def _out_dir(path: str | os.PathLike) -> Path:
    """``--out``, created if missing; one line (``StorageError``) when it cannot be."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise StorageError(f"{out}: --out exists and is not a folder; pick another --out")
    with storage_errors(str(out), doing="cannot create the --out folder"):
        out.mkdir(parents=True, exist_ok=True)
    return out


def _open_study(opts: SearchOptions, url: str, study_name: str, directions: list[str], *, pruner: Any,
                record: dict, n_constraints: int) -> tuple[Any, optuna.Study, int]:
    """Open (or create) the storage and the study, check the study's record, take a worker number
    (the sampler's seed); returns ``(storage, study, trials counted)``. Storage faults are one line."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats are used with ask/tell on purpose (study.py records them); the API is experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    storage = st.make_storage(url)
    with storage_errors(url, doing="cannot read or write the study", kept=True):
        study = st.open_study(storage, study_name, directions, None, pruner)
        st.check_study_record(study, record, storage=storage, url=url)
        worker = st.claim_worker_number(study, storage, url)
        before = st.budget_count(study)
    study.sampler = st.make_sampler(opts.sampler, seed=_sampler_seed(opts.seed, worker), n_objectives=len(directions),
                                    n_constraints=n_constraints, budget=opts.budget)
    return storage, study, before


def _study_record(names: list[str], data: Any, cfg: Recipe, space: SearchSpace, opts: SearchOptions) -> dict:
    """What must not change when a study is resumed: objectives, data set, recipe (the training seed
    excepted: workers may train with their own --seed), how throughput is obtained, and a hash of the
    search space."""
    recipe = {k: v for k, v in cfg.to_dict().items() if k != "seed"}
    params = [{k: v for k, v in vars(p).items() if k != "pos"} for p in space.params]
    shape = {"base": space.base, "params": params, "constraints": space.constraints, "throughput": space.throughput}
    text = json.dumps(shape, sort_keys=True, default=str)
    return {"objectives": names, "data": data.describe(), "recipe": recipe,
            "throughput_model": opts.throughput_model or "measure",
            "space_hash": hashlib.sha256(text.encode()).hexdigest()[:16]}


def _pruner_name(opts: SearchOptions, names: list[str]) -> str:
    """Optuna prunes single-objective studies only, and per-epoch reports are accuracies."""
    single = len(names) == 1
    if opts.pruner not in (None, "none") and not single:
        raise ValueError(f"--pruner {opts.pruner} needs a single objective (--objectives accuracy); "
                         f"Optuna prunes only single-objective studies")
    if not single or names[0] != "accuracy":
        return "none"
    return opts.pruner or "median"


def search_loop(setup: SearchSetup, opts: SearchOptions, *, log: Callable[[str], None]) -> dict:
    """Run trials until ``opts.budget`` count (or the timeout); the results are written even when
    interrupted. Returns the summary of :func:`archdsl.search.results.export_results`."""
    study = setup.study
    bar = _progress(opts, st.budget_count(study))
    t0 = time.perf_counter()
    loop, failed = None, False
    try:
        with storage_errors(setup.url, doing="cannot write the study", kept=True):
            loop = st.run_workers_loop(study, storage=setup.storage, url=setup.url, budget=opts.budget,
                                       objective=lambda trial: run_trial(trial, setup.ctx), timeout=opts.timeout,
                                       on_trial_end=_bar_updater(bar, study, opts.budget, setup.directions), log=log,
                                       ask=_halving_ask(setup, opts))
    except BaseException:
        failed = True
        raise
    finally:
        if bar is not None:
            bar.close()
        summary = _export(study, setup.out, setup.names, log=log, after_error=failed, n_rungs=len(setup.rungs or [1]),
                          floor=setup.floor)
        summary.update(study=study, loop=loop, seconds=time.perf_counter() - t0, objectives=setup.names,
                       directions=setup.directions, url=setup.url, out=setup.out)
    return summary


def _export(study: Any, out: Path, names: list[str], *, log: Callable[[str], None], after_error: bool,
            n_rungs: int = 1, floor: float | None = None) -> dict:
    """The result files (``results.export_results``). A disk that is full or read-only is a
    ``StorageError``; when the search already stopped on an error, it is only logged, so that the
    first error is the one reported. A Ctrl-C while writing is raised once the files are whole."""
    try:   # Ctrl-C held while the files are written (a Ctrl-C inside an import or a plot is not clean)
        with deferred_interrupts(), storage_errors(str(out), doing="cannot write the results", kept=True):
            return results.export_results(study, out, names, n_rungs, floor)
    except StorageError as e:
        if not after_error:
            raise
        log(f"archdsl search: {e}")
        return {"pareto": [], "trials": [], "files": {}}


def _halving_ask(setup: SearchSetup, opts: SearchOptions) -> Callable[[optuna.Study], Any] | None:
    """With ``--fidelity``: successive halving decides each next trial (``halving.ask_next``)."""
    if not setup.rungs:
        return None
    return lambda study: halving.ask_next(study, budget=opts.budget, n_rungs=len(setup.rungs), eta=opts.eta)


def after_search(summary: dict, setup: SearchSetup, opts: SearchOptions, *, log: Callable[[str], None]) -> dict:
    """Add the multi-fidelity cost (``summary['cost']``) and run the fidelity check
    (``--check-fidelity``: ``summary['fidelity']``)."""
    if setup.rungs:
        summary["cost"] = halving.cost_summary(summary["trials"], setup.rungs, opts.seeds)
    if opts.check_fidelity:
        summary["fidelity"] = check_fidelity(
            setup.study, setup.ctx, summary["pareto"], setup.out, k=opts.check_fidelity,
            long_epochs=opts.long_epochs, seeds=opts.fidelity_seeds,
            rung=len(setup.rungs) - 1 if setup.rungs else None, log=log)
    summary.update(rungs=setup.rungs, long_epochs=opts.long_epochs, fidelity_seeds=opts.fidelity_seeds,
                   ctx=setup.ctx, floor=setup.floor)
    return summary


def summary_lines(summary: dict) -> list[str]:
    """The closing lines: the multi-fidelity cost, the fidelity check, and the study with its storage
    and the optuna-dashboard command that opens it."""
    lines = []
    cost, rungs = summary.get("cost"), summary.get("rungs")
    if cost:
        lines.append(f"successive halving: trials per rung {cost['trials_per_rung']} (epochs: trials); "
                     f"{cost['epochs']} training epochs vs {cost['epochs_if_all_top']} to train every "
                     f"architecture at {rungs[-1]} epochs ({cost['saved'] * 100:.0f}% saved)")
    fid = summary.get("fidelity")
    if fid:
        lines.append(f"fidelity ({fid['trials']} trials re-trained at {summary['long_epochs']} epochs x "
                     f"{summary['fidelity_seeds']} seeds): Kendall tau {fid['kendall_tau']:.2f} "
                     f"(p={fid['kendall_p']:.3f}) between proxy and long accuracy, seed spread "
                     f"{fid['seed_spread_points']:.1f} points, top-{fid['top_k']} overlap "
                     f"{fid['top_k_overlap']}/{fid['top_k']} -> {summary['out']}/fidelity.csv, fidelity.png")
    url = summary["url"]
    shown = url[len("journal:"):] if url.startswith("journal:") else url
    lines.append(f"study '{summary['study'].study_name}' in {url.split('@')[-1]}; open it with: optuna-dashboard "
                 f"{shown if '@' not in url else '<the storage URL, with its password>'}")
    return lines


def _bar_updater(bar: Any, study: optuna.Study, budget: int, directions: list[str]) -> Callable[[Any], None]:
    def on_trial_end(frozen: Any) -> None:
        if bar is None:
            return
        trials = study.get_trials(deepcopy=False)
        bar.n = min(budget, sum(st.counts_toward_budget(t) for t in trials if t.state.is_finished()))
        front = results.pareto_front(trials, directions)
        accs = [t.user_attrs.get("accuracy") for t in front if t.user_attrs.get("accuracy") is not None]
        bar.set_postfix_str(f"last #{frozen.number} {frozen.state.name.lower()}, best acc "
                            f"{max(accs) * 100:.1f}%, front {len(front)}" if accs else
                            f"last #{frozen.number} {frozen.state.name.lower()}")
        bar.refresh()

    return on_trial_end


def _progress(opts: SearchOptions, initial: int) -> Any:
    if not opts.progress or opts.budget == 0:
        return None
    return tqdm(total=opts.budget, initial=min(initial, opts.budget), file=sys.stderr, desc="search",
                unit="trial", dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                "[{elapsed}<{remaining}]{postfix}")
