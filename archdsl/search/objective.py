"""One trial of the search: sample -> compile -> constraints -> train -> accuracy -> throughput.

Everything a trial learns is stored in its ``user_attrs`` (readable in optuna-dashboard):
``spec`` (the concrete spec as YAML; it builds the same model with ``archdsl build``), ``arch``
(``archdsl.language.spec_hash`` of the spec, its name excluded; a trial repeating a finished
architecture and recipe copies its results and records ``duplicate_of`` instead of training again;
workers wait for a twin another worker is training), ``mixer``,
``block``, ``params``, ``macs``, ``constraints`` (Optuna's convention, ``<= 0`` satisfied),
``feasible``, ``accuracy`` (the mean over ``--seeds``), ``accuracy_std`` and ``seed_accuracies``
(with several seeds), ``epoch_accuracy`` (first seed), ``images_per_s``, ``train_seconds``, ``train``
(the recipe used; with ``--fidelity`` its epochs are the trial's rung's), and on failure ``fail_reason``.

With ``seeds = N`` the architecture is trained N times, with seeds ``train.seed + i`` (each seed sets
the initialisation, batch order and augmentation): the accuracy objective is the mean.

A trial that violates ``params_max`` / ``macs_max`` is not trained: it is told COMPLETE with the
worst objective values (accuracy 0, throughput 0) and its constraint values, so multi-objective
samplers (given :func:`constraints_func`) rank it as infeasible and the Pareto export skips it.
"""
from __future__ import annotations

import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import yaml

from archdsl.analysis import summary
from archdsl.analysis.benchmark import _is_oom as is_torch_oom
from archdsl.analysis.benchmark import measure_throughput
from archdsl.analysis.roofline import predict_model
from archdsl.compiler import build_model, optimize
from archdsl.errors import SpecError
from archdsl.language import load_spec_dict, spec_hash
from archdsl.search.space import SearchSpace
from archdsl.search.workers import WORKER_ATTR, worker_alive
from archdsl.train import NonFiniteLossError, Recipe, train

__all__ = ["TrialContext", "run_trial", "train_seeds", "seed_stats", "fail_reason", "constraints_func",
           "spec_yaml", "component_name"]


@dataclass
class TrialContext:
    """What every trial of one search process shares."""

    space: SearchSpace
    objectives: list[str]                      # objective names, in the study's order
    data: Any                                  # archdsl.data.DataBundle
    train: Recipe                              # the proxy recipe before per-trial ``train.*`` samples
    device: str = "cpu"
    throughput: dict = field(default_factory=dict)   # measure_throughput settings
    throughput_model: Any = None                     # a roofline DeviceProfile: predict instead of measuring
    prune: bool = False                        # single objective: report per-epoch accuracy, may prune
    build: Callable[[dict, str], tuple[Any, Any]] | None = None   # (spec_dict, source) -> (spec, model)
    seeds: int = 1                             # trainings per architecture (accuracy = their mean)
    rungs: list[int] | None = None             # --fidelity: epochs per rung (user_attrs['rung'] picks)


def component_name(ref: Any) -> str:
    """``"mlla"`` or ``{type: mlla, ...}`` -> ``"mlla"``."""
    if isinstance(ref, dict):
        return str(ref.get("type", "?"))
    return str(ref) if ref is not None else "-"


def spec_yaml(spec_dict: dict, header: str = "") -> str:
    """The concrete spec as YAML text (plain data, key order kept)."""
    body = yaml.safe_dump(spec_dict, sort_keys=False, default_flow_style=None, width=100)
    return (header + body) if header else body


def _default_build(spec_dict: dict, source: str) -> tuple[Any, Any]:
    """Validate a spec dict with the language and compile it: ``(spec, model)``."""
    spec = load_spec_dict(spec_dict, source)
    return spec, build_model(spec)


def _count(model: torch.nn.Module, image_size: int, in_chans: int) -> tuple[int, int]:
    """Parameters and MACs at ``1 x in_chans x image_size^2`` (the analysis module's counters)."""
    params = int(summary.count_params(model))
    macs = int(summary.count_macs(model, (in_chans, image_size, image_size)))
    return params, macs


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or is_torch_oom(e)


def fail_reason(e: BaseException) -> str:
    """A one-line reason stored in ``user_attrs['fail_reason']``."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    if isinstance(e, NonFiniteLossError):
        return f"nan loss: {first}"
    if _is_oom(e):
        return f"out of memory: {first}"
    if isinstance(e, SpecError):
        return f"invalid spec: {first}"
    return f"{type(e).__name__}: {first}"


def record_constraints(trial: Any, names: list[str], values: list[float]) -> None:
    """Store constraint values (``<= 0`` = satisfied): in ``user_attrs['constraints']`` (exports), and
    through ``Trial.set_constraint`` where Optuna has it (>= 5: its samplers read these directly);
    older Optuna reads the user attribute through :func:`constraints_func`."""
    trial.set_user_attr("constraints", list(values))
    if hasattr(trial, "set_constraint"):
        for name, value in zip(names, values):
            trial.set_constraint(name, float(value))


def constraints_func(n_constraints: int) -> Callable[[Any], list[float]]:
    """Optuna < 5: the sampler's ``constraints_func`` reading the values a trial stored."""

    def func(frozen: Any) -> list[float]:
        return list(frozen.user_attrs.get("constraints", [0.0] * n_constraints))

    return func


def _worst(name: str, metrics: dict) -> float:
    if name in ("params", "macs"):
        return float(metrics[name])
    return 0.0


_COPIED = ("params", "macs", "constraints", "feasible", "infeasible", "accuracy", "accuracy_std",
           "seed_accuracies", "epoch_accuracy", "images_per_s", "train_seconds", "throughput_setup")


def _finished_twin(trial: Any, cfg: Recipe, poll_s: float = 1.0) -> Any:
    """A COMPLETE trial of this study with the same spec and recipe (samplers repeat points of small
    discrete spaces; training is deterministic, so its results are this trial's results). While a
    lower-numbered trial with them is still RUNNING in a worker that is alive (workers sample on
    their own), wait for it, so that no architecture is trained twice."""
    import optuna

    arch, recipe, seeds = trial.user_attrs.get("arch"), cfg.to_dict(), trial.user_attrs.get("seeds", 1)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    while True:
        same = [t for t in trial.study.get_trials(deepcopy=False, states=states)
                if t.user_attrs.get("arch") == arch and t.user_attrs.get("train") == recipe
                and t.user_attrs.get("seeds", 1) == seeds
                and "duplicate_of" not in t.user_attrs and t.number != trial.number]
        done = [t for t in same if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None]
        if done:
            return done[0]
        if not any(t.number < trial.number and t.system_attrs.get(WORKER_ATTR) is not None
                   and worker_alive(t.system_attrs[WORKER_ATTR]) is not False for t in same):
            return None
        optuna.storages.fail_stale_trials(trial.study)   # a twin on a dead host's worker: heartbeat decides
        time.sleep(poll_s)


def _copy_twin(trial: Any, twin: Any, ctx: TrialContext) -> list[float]:
    for key in _COPIED:
        if key in twin.user_attrs:
            trial.set_user_attr(key, twin.user_attrs[key])
    if "constraints" in twin.user_attrs:
        record_constraints(trial, list(ctx.space.constraints), twin.user_attrs["constraints"])
    trial.set_user_attr("duplicate_of", twin.number)
    return list(twin.values)


def seed_stats(accuracies: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one seed) of per-seed accuracies."""
    mean = statistics.fmean(accuracies)
    return mean, (statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0)


def train_seeds(spec_dict: dict, cfg: Recipe, ctx: TrialContext, source: str, seeds: list[int], *,
                model: Any = None, on_epoch: Callable[[int, float], None] | None = None) -> tuple[Any, list]:
    """Train the architecture once per seed (``torch.manual_seed(seed)`` before building, ``cfg.seed =
    seed``); ``model`` may be the first seed's model, already built. ``on_epoch`` hooks the first
    seed's training. Returns the last model and the :class:`TrainResult` of every seed."""
    build = ctx.build or _default_build
    results = []
    for i, seed in enumerate(seeds):
        if model is None or i > 0:
            torch.manual_seed(seed)
            _, model = build(spec_dict, source)
        results.append(train(model, cfg.replace(seed=seed), ctx.data, device=ctx.device,
                             on_epoch_end=on_epoch if i == 0 else None))
    return model, results


def _sample(trial: Any, ctx: TrialContext) -> tuple[dict, Recipe]:
    """The trial's spec and recipe (its rung's epochs under successive halving), recorded in its attrs."""
    spec_dict, train_over = ctx.space.sample(trial)
    trial.set_user_attr("arch", spec_hash(load_spec_dict(spec_dict, f"<trial {trial.number}>")))
    spec_dict["name"] = f"{ctx.space.base.get('name', 'search')}_trial{trial.number}"
    trial.set_user_attr("spec", spec_yaml(spec_dict))
    trial.set_user_attr("mixer", component_name(spec_dict.get("mixer")))
    trial.set_user_attr("block", component_name(spec_dict.get("block")))
    cfg = ctx.train.replace(**train_over)
    if ctx.rungs:
        cfg = cfg.replace(epochs=ctx.rungs[int(trial.user_attrs.get("rung", 0))])
    trial.set_user_attr("train", cfg.to_dict())
    trial.set_user_attr("seeds", ctx.seeds)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    return spec_dict, cfg


def _train(trial: Any, ctx: TrialContext, spec_dict: dict, cfg: Recipe, source: str, model: Any) -> tuple[Any, float]:
    """Train once per seed (per-epoch accuracies reported for pruning) -> (model, mean accuracy)."""

    def on_epoch(epoch: int, acc: float) -> None:
        trial.set_user_attr("epoch_accuracy", trial.user_attrs.get("epoch_accuracy", []) + [acc])
        if ctx.prune:
            import optuna

            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (accuracy {acc:.4f})")

    model, runs = train_seeds(spec_dict, cfg, ctx, source, [cfg.seed + i for i in range(ctx.seeds)],
                              model=model, on_epoch=on_epoch)
    accuracy, std = seed_stats([r.accuracy for r in runs])
    trial.set_user_attr("accuracy", accuracy)
    if ctx.seeds > 1:
        trial.set_user_attr("accuracy_std", std)
        trial.set_user_attr("seed_accuracies", [r.accuracy for r in runs])
    trial.set_user_attr("train_seconds", round(sum(r.seconds for r in runs), 3))
    return model, accuracy


def run_trial(trial: Any, ctx: TrialContext) -> list[float]:
    """Run one trial and return its objective values in ``ctx.objectives`` order.

    Raises on failure (the caller records the reason and tells the study FAIL), ``optuna.TrialPruned``
    when pruned.
    """
    spec_dict, cfg = _sample(trial, ctx)
    twin = _finished_twin(trial, cfg)
    if twin is not None:
        return _copy_twin(trial, twin, ctx)

    torch.manual_seed(cfg.seed)            # the same initialisation stream for every trial
    source = f"<{trial.study.study_name} trial {trial.number}>"
    _, model = (ctx.build or _default_build)(spec_dict, source)
    params, macs = _count(model, ctx.data.image_size, ctx.data.in_chans)
    metrics: dict[str, float] = {"params": params, "macs": macs}
    trial.set_user_attr("params", params)
    trial.set_user_attr("macs", macs)
    values = ctx.space.constraint_values(metrics)      # accuracy_min reads 0.0 (no accuracy yet)
    violated = [name for name, v in zip(ctx.space.constraints, values) if not name.startswith("accuracy") and v > 0]
    if violated:
        record_constraints(trial, list(ctx.space.constraints), values)
        trial.set_user_attr("feasible", False)
        trial.set_user_attr("infeasible", ", ".join(violated))
        return [_worst(o, metrics) for o in ctx.objectives]

    model, metrics["accuracy"] = _train(trial, ctx, spec_dict, cfg, source, model)
    metrics["throughput"] = _throughput(model, ctx, trial)
    if ctx.space.constraints:
        values = ctx.space.constraint_values(metrics)
        record_constraints(trial, list(ctx.space.constraints), values)
        trial.set_user_attr("feasible", all(v <= 0 for v in values))
    else:
        trial.set_user_attr("feasible", True)
    return [float(metrics[o]) for o in ctx.objectives]


def _throughput(model: torch.nn.Module, ctx: TrialContext, trial: Any) -> float:
    """Images/s: measured on ``ctx.device`` (the space's ``throughput:`` settings; ``optimize: true``
    times ``archdsl.optimize(model)``, ``dtype`` casts it), or predicted by the
    roofline model for ``ctx.throughput_model`` (a DeviceProfile: searching here for another device)."""
    tp_cfg = {"batch_size": 64, "warmup": 2, "iters": 5, "min_time": 0.25}
    tp_cfg.update(ctx.throughput)
    if tp_cfg.pop("optimize", False):  # measured the way it is deployed: archdsl.optimize, then the dtype
        model = optimize(model, for_inference=True)
    t0 = time.perf_counter()
    if ctx.throughput_model is not None:
        tp = predict_model(model, ctx.throughput_model, batch_size=int(tp_cfg["batch_size"]),
                           image_size=ctx.data.image_size, in_chans=ctx.data.in_chans,
                           dtype=str(tp_cfg.get("dtype", "float32")))
        setup = {k: tp[k] for k in ("batch_size", "dtype", "profile")} | {"mode": "roofline"}
    else:
        tp = measure_throughput(model, image_size=ctx.data.image_size, in_chans=ctx.data.in_chans,
                                device=ctx.device, **tp_cfg)
        if tp.get("error"):
            raise RuntimeError(f"throughput measurement failed: {tp['error']}")
        setup = {k: tp.get(k) for k in ("batch_size", "image_size", "device", "dtype", "num_threads", "mode")}
        setup["optimize"] = bool(ctx.throughput.get("optimize", False))
    trial.set_user_attr("images_per_s", float(tp["images_per_s"]))
    trial.set_user_attr("throughput_seconds", round(time.perf_counter() - t0, 3))
    trial.set_user_attr("throughput_setup", setup)
    return float(tp["images_per_s"])
