"""Search spaces in YAML: a base spec plus markers on its dotted fields.

A space file::

    base: micro.yaml                     # a model spec, path relative to this file
    extends: other_space.yaml            # optional: start from another space file (deep merge)
    space:                               # dotted field of the base spec -> marker (sampled in this order)
      mixer.type: {choice: [softmax_attention, linear_attention, selective_ssm]}
      mixer.d_state: {int: [8, 16], step: 8, when: {mixer.type: selective_ssm}}
      stages.depths.1: {int: [1, 3]}                      # per-stage: a list index
      train.lr: {float: [1.0e-3, 4.0e-3], log: true}      # the training recipe can be searched too
    objectives: {accuracy: maximize, throughput: maximize}
    constraints: {params_max: 2.0e6, macs_max: 1.0e8}
    train: {dataset: default, epochs: 3, batch_size: 128, lr: 2.0e-3}
    throughput: {batch_size: 64}

Markers: ``{choice: [v, ...]}`` (any YAML values; lists/mappings are shown to Optuna as JSON labels),
``{int: [lo, hi], step: s, log: bool}``, ``{float: [lo, hi], log: bool, step: s}``; each may carry
``when: {path: value}`` (a list value means "one of"). A field whose ``when`` is false is left out of
the trial's spec (removed if the base sets it), so options that only one mixer accepts live beside
their condition. ``when`` may only refer to fields sampled above it (or fixed in the base).
A field written with the ``train.`` prefix samples the training recipe instead of the model.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archdsl import language as spec_mod
from archdsl.analysis.benchmark import DTYPES
from archdsl.data import DataError, parse_preprocess
from archdsl.errors import SpecError, did_you_mean
from archdsl.language.resolve import apply_overrides, resolve_data
from archdsl.language.schema import fields_at
from archdsl.language.yaml_loader import Pos, Positions, format_path, load_yaml_file, parse_path
from archdsl.train import Recipe

__all__ = ["Param", "SearchSpace", "load_space", "default_space_path", "OBJECTIVES", "CONSTRAINTS",
           "TRAIN_KEYS", "get_path"]

TOP_KEYS = ("base", "extends", "space", "objectives", "constraints", "train", "throughput", "data", "name",
            "description")
OBJECTIVES = {"accuracy": "maximize", "throughput": "maximize", "params": "minimize", "macs": "minimize"}
CONSTRAINTS = ("params_max", "macs_max", "params_min", "accuracy_min")
TRAIN_KEYS = ("dataset",) + tuple(f.name for f in dataclasses.fields(Recipe))   # the proxy recipe's fields
THROUGHPUT_KEYS = ("batch_size", "warmup", "iters", "min_time", "dtype", "optimize")
_MARKER_KEYS = ("choice", "int", "float")
_MARKER_EXTRA = ("step", "log", "when")
_SCALAR = (type(None), bool, int, float, str)


def default_space_path() -> Path:
    """The space ``archdsl search`` uses without ``--space`` (shipped inside the package)."""
    return Path(__file__).resolve().parent / "default.yaml"


# ------------------------------------------------------------------ dotted paths in plain data
def _child(node: Any, key: Any) -> Any:
    if isinstance(node, list):
        if not isinstance(key, int) or not -len(node) <= key < len(node):
            raise KeyError(key)
        return node[key]
    if isinstance(node, dict):
        return node[key]
    raise KeyError(key)


def get_path(data: Any, path: tuple, default: Any = KeyError) -> Any:
    """``get_path({"a": {"b": [1, 2]}}, ("a", "b", 1)) == 2``; missing -> ``default`` (or KeyError)."""
    node = data
    try:
        for key in path:
            if isinstance(node, str) and key == "type":   # a component named by a bare string
                return node
            node = _child(node, key)
    except KeyError:
        if default is KeyError:
            raise
        return default
    return node


# ------------------------------------------------------------------ markers
def _label(value: Any) -> Any:
    """Optuna categorical choices must be scalars: lists/mappings become compact JSON labels."""
    return value if isinstance(value, _SCALAR) else json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class Param:
    """One searched field: ``path`` (tuple), ``kind`` choice|int|float, its arguments and condition."""

    name: str                     # dotted, also the Optuna parameter name
    path: tuple
    kind: str
    choices: list = field(default_factory=list)
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    when: dict = field(default_factory=dict)     # dotted path -> value or list of accepted values
    pos: Pos | None = None

    @property
    def target(self) -> str:
        """"model" (a spec field) or "train" (the training recipe)."""
        return "train" if self.path[0] == "train" else "model"

    def suggest(self, trial: Any) -> Any:
        """Draw this field's value from an Optuna trial."""
        if self.kind == "choice":
            labels = [_label(c) for c in self.choices]
            got = trial.suggest_categorical(self.name, labels)
            return copy.deepcopy(self.choices[labels.index(got)])
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def active(self, lookup: Callable[[str], Any]) -> bool:
        """Whether the ``when`` clause holds; ``lookup(dotted_path)`` gives a field's current value."""
        for key, want in self.when.items():
            got = lookup(key)
            accepted = want if isinstance(want, list) else [want]
            if not any(_same(got, a) for a in accepted):
                return False
        return True

    def describe(self) -> str:
        if self.kind == "choice":
            return "{choice: " + json.dumps(self.choices) + "}"
        extra = (f", step: {self.step:g}" if self.step else "") + (", log: true" if self.log else "")
        return f"{{{self.kind}: [{self.low:g}, {self.high:g}]{extra}}}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


@dataclass
class SearchSpace:
    """A loaded space file. ``sample(trial)`` -> ``(spec_dict, train_overrides)``."""

    file: str
    base_file: Path
    base: dict                                    # the resolved base spec (plain data)
    params: list[Param]
    objectives: dict[str, str]                    # name -> "maximize" | "minimize" (ordered)
    constraints: dict[str, float]
    train: dict[str, Any]
    throughput: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)   # folder preprocessing (archdsl.data.parse_preprocess)

    def sample(self, trial: Any) -> tuple[dict, dict]:
        """Sample every active field (in file order); returns a concrete spec dict and the sampled
        training-recipe fields (``{"lr": 0.002}``), both plain data. A model field is applied as the
        ``--set`` override ``+path=value`` (``path=null`` when its ``when`` is false, which removes it)."""
        spec = copy.deepcopy(self.base)
        positions: Positions = {}
        train: dict = {}

        def lookup(dotted: str) -> Any:
            p = parse_path(dotted)
            if p[0] == "train":
                return train.get(p[1], self.train.get(p[1])) if len(p) == 2 else None
            return get_path(spec, p, None)

        for prm in self.params:
            if prm.target == "train":
                if prm.active(lookup):
                    train[prm.path[1]] = prm.suggest(trial)
                continue
            value = prm.suggest(trial) if prm.active(lookup) else None
            if value is None and get_path(spec, prm.path, None) is None:
                continue
            apply_overrides(spec, positions, [f"+{prm.name}={json.dumps(value)}"])
        return spec, train

    def constraint_values(self, metrics: dict[str, float]) -> list[float]:
        """Optuna's convention: one value per constraint, ``<= 0`` means satisfied. ``metrics`` has
        ``params``, ``macs`` (and ``accuracy`` for ``accuracy_min``)."""
        out = []
        for name, limit in self.constraints.items():
            metric, _, side = name.rpartition("_")
            got = float(metrics.get(metric, float("nan")))
            v = got - limit if side == "max" else limit - got
            out.append(v if math.isfinite(v) else 0.0)
        return out

    def summary(self) -> str:
        return ", ".join(f"{p.name}={p.describe()}" for p in self.params)


# ------------------------------------------------------------------ loading
def _err(msg: str, positions: Positions, path: tuple, file: str) -> SpecError:
    pos = positions.get(path) or positions.get(path[:-1]) or positions.get(()) or Pos(file)
    return SpecError(msg, **pos.kwargs(), path=format_path(path) or None)


def _number(value: Any, what: str, positions: Positions, path: tuple, file: str, *, integer: bool = False):
    """A number (the loader reads ``2e6`` as a float already); anything else is a located error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(f"{what} must be a number, got {value!r}", positions, path, file)
    if integer:
        if float(value) != int(value):
            raise _err(f"{what} must be an integer, got {value!r}", positions, path, file)
        return int(value)
    return float(value)


def _read_space(path: Path) -> tuple[dict, Positions, str]:
    """Read a space file and resolve its ``extends`` with the language's rules (deep merge, lists of
    bases, ``null`` deletes, cycles named); ``base`` becomes an absolute path, relative to the file
    that wrote it."""
    shown = str(path)
    data, positions = load_yaml_file(path, display=shown)
    data, positions = resolve_data(data, positions, display=shown, real_dir=path.resolve().parent,
                                   display_dir=os.path.dirname(shown), chain=((str(path.resolve()), shown),))
    for key in data:
        if key not in TOP_KEYS:
            raise _err(f"unknown key '{key}' in a search space{did_you_mean(key, TOP_KEYS)}; "
                       f"expected one of {', '.join(TOP_KEYS)}", positions, (key,), shown)
    if "base" in data:
        if not isinstance(data["base"], str):
            raise _err("'base' must be a path to a model spec (relative to this file)", positions,
                       ("base",), shown)
        writer = positions.get(("base",), Pos(shown)).file or shown
        data["base"] = str((Path(writer).parent / data["base"]).resolve())
    return data, positions, shown


def _resolve_base(base_path: Path) -> dict:
    """The base spec as plain, standalone data (``extends`` merged, templates from user files inlined),
    validated by the language. Built-in templates (``archdsl/blocks``) stay referenced by name, so a
    trial that changes ``block`` does not carry the base's unused template along."""
    if not base_path.is_file():
        raise SpecError(f"base spec not found: {base_path}")
    loaded = spec_mod.load_spec(base_path)
    data = spec_mod.resolved_data(loaded)
    own = set((loaded.to_dict().get("blocks") or {}))
    blocks = data.get("blocks") or {}
    for entry in loaded.stage_plan():
        if spec_mod.block_kind(entry.block, loaded) != "template":
            continue
        tpl = spec_mod.load_template(entry.block, loaded, at=entry.block_path)
        if tpl.origin == "builtin" and tpl.name not in own:
            blocks.pop(tpl.name, None)
    if not blocks:
        data.pop("blocks", None)
    return data


def load_space(path: str | Path, *, resolve_base: bool = True) -> SearchSpace:
    """Load and check a space file. Errors are :class:`SpecError` located at FILE:LINE:COL: key."""
    path = Path(path)
    data, positions, shown = _read_space(path)
    if "base" not in data:
        raise _err("a search space needs 'base:' (the model spec to vary)", positions, (), shown)
    base_file = Path(data["base"])
    if resolve_base:
        try:
            base = copy.deepcopy(_resolve_base(base_file))   # no aliasing with loaded templates
        except SpecError as e:
            if e.file is None:
                raise e.located(**positions.get(("base",), Pos(shown)).kwargs(), path="base") from None
            raise
    else:
        base = load_yaml_file(base_file)[0]        # raw: no extends / validation (tools, tests)

    objectives = _objectives_section(data, positions, shown)
    constraints = _constraints_section(data, positions, shown)
    train = dict(data.get("train") or {})
    for name in train:
        if name not in TRAIN_KEYS:
            raise _err(f"unknown training setting '{name}'{did_you_mean(name, TRAIN_KEYS)}; known: "
                       f"{', '.join(TRAIN_KEYS)}", positions, ("train", name), shown)
    throughput = _throughput_section(data, positions, shown)
    raw_space = data.get("space") or {}
    if not isinstance(raw_space, dict):
        raise _err("'space' must be a mapping of dotted fields to markers", positions, ("space",), shown)
    params: list[Param] = []
    for name, marker in raw_space.items():
        params.append(_parse_param(str(name), marker, base, params, positions, shown))
    return SearchSpace(file=shown, base_file=base_file, base=base, params=params, objectives=objectives,
                       constraints=constraints, train=train, throughput=throughput,
                       data=_data_section(data, positions, shown))


def _objectives_section(data: dict, positions: Positions, shown: str) -> dict:
    objectives = data.get("objectives", {"accuracy": "maximize", "throughput": "maximize"})
    if isinstance(objectives, list):
        objectives = {o: OBJECTIVES.get(o, "maximize") for o in objectives}
    if not isinstance(objectives, dict) or not objectives:
        raise _err("'objectives' must be a mapping like {accuracy: maximize, throughput: maximize}",
                   positions, ("objectives",), shown)
    for name, direction in objectives.items():
        if name not in OBJECTIVES:
            raise _err(f"unknown objective '{name}'{did_you_mean(name, OBJECTIVES)}; known: "
                       f"{', '.join(OBJECTIVES)}", positions, ("objectives", name), shown)
        if direction not in ("maximize", "minimize"):
            raise _err(f"direction must be maximize or minimize, got {direction!r}", positions,
                       ("objectives", name), shown)
    return dict(objectives)


def _constraints_section(data: dict, positions: Positions, shown: str) -> dict:
    constraints: dict[str, float] = {}
    for name, limit in (data.get("constraints") or {}).items():
        if name not in CONSTRAINTS:
            raise _err(f"unknown constraint '{name}'{did_you_mean(name, CONSTRAINTS)}; known: "
                       f"{', '.join(CONSTRAINTS)}", positions, ("constraints", name), shown)
        constraints[name] = _number(limit, f"constraint {name}", positions, ("constraints", name), shown)
    return constraints


def _throughput_section(data: dict, positions: Positions, shown: str) -> dict:
    throughput = dict(data.get("throughput") or {})
    for name in throughput:
        if name not in THROUGHPUT_KEYS:
            raise _err(f"unknown throughput setting '{name}'{did_you_mean(name, THROUGHPUT_KEYS)}; known: "
                       f"{', '.join(THROUGHPUT_KEYS)}", positions, ("throughput", name), shown)
    if "dtype" in throughput and throughput["dtype"] not in DTYPES:
        raise _err(f"throughput.dtype must be one of {', '.join(DTYPES)}; got {throughput['dtype']!r}",
                   positions, ("throughput", "dtype"), shown)
    if not isinstance(throughput.get("optimize", False), bool):
        raise _err(f"throughput.optimize must be true or false (archdsl.optimize before timing); got "
                   f"{throughput['optimize']!r}", positions, ("throughput", "optimize"), shown)
    return throughput


def _data_section(data: dict, positions: Positions, shown: str) -> dict:
    """The ``data:`` section (folder preprocessing: normalize, resize), checked by the data module."""
    section = data.get("data") or {}
    if not isinstance(section, dict):
        raise _err("'data' must be a mapping like {normalize: dataset, resize: crop}", positions, ("data",), shown)
    try:
        parse_preprocess(section)
    except DataError as e:
        key = str(e).split(":", 1)[0].split(".")[-1]
        raise _err(str(e).split(": ", 1)[1], positions, ("data", key) if key in section else ("data",),
                   shown) from None
    return dict(section)


def _parse_param(name: str, marker: Any, base: dict, earlier: list[Param], positions: Positions,
                 file: str) -> Param:
    at = ("space", name)
    path = parse_path(name)
    if not isinstance(marker, dict) or sum(k in marker for k in _MARKER_KEYS) != 1:
        raise _err(f"expected a marker {{choice: [...]}}, {{int: [lo, hi]}} or {{float: [lo, hi]}}, "
                   f"got {marker!r}", positions, at, file)
    for k in marker:
        if k not in _MARKER_KEYS + _MARKER_EXTRA:
            raise _err(f"unknown marker key '{k}'{did_you_mean(k, _MARKER_KEYS + _MARKER_EXTRA)}", positions,
                       at + (k,), file)
    kind = next(k for k in _MARKER_KEYS if k in marker)
    prm = Param(name=name, path=path, kind=kind, pos=positions.get(at))
    if path[0] == "train":
        if len(path) != 2 or path[1] not in TRAIN_KEYS or path[1] == "dataset":
            raise _err(f"'{name}': only train.<setting> can be searched, one of "
                       f"{', '.join(k for k in TRAIN_KEYS if k != 'dataset')}", positions, at, file)
    else:
        _check_target(path, base, positions, at, file)
    if kind == "choice":
        _parse_choice(prm, marker, positions, at, file)
    else:
        _parse_range(prm, marker, positions, at, file)
    when = marker.get("when", {})
    if not isinstance(when, dict):
        raise _err("when must be a mapping {dotted.field: value}", positions, at + ("when",), file)
    names = [p.name for p in earlier]
    for key in when:
        key = str(key)
        if key == name:
            raise _err(f"'{name}' cannot depend on itself", positions, at + ("when",), file)
        if key not in names and key in _later_names(positions, name):
            raise _err(f"when: '{key}' is sampled after '{name}'; move '{key}' above it", positions,
                       at + ("when", key), file)
        if key not in names and parse_path(key)[0] != "train" and get_path(base, parse_path(key), KeyError) is KeyError:
            raise _err(f"when: '{key}' is neither sampled above nor set in the base spec", positions,
                       at + ("when", key), file)
    prm.when = {str(k): v for k, v in when.items()}
    return prm


def _parse_choice(prm: Param, marker: dict, positions: Positions, at: tuple, file: str) -> None:
    choices = marker["choice"]
    if not isinstance(choices, list) or not choices:
        raise _err("choice needs a non-empty list of values", positions, at + ("choice",), file)
    labels = [_label(c) for c in choices]
    if len(set(map(repr, labels))) != len(labels):
        raise _err("choice has duplicate values", positions, at + ("choice",), file)
    prm.choices = choices
    if "step" in marker or "log" in marker:
        raise _err("'step' and 'log' apply to int/float markers, not choice", positions, at, file)


def _parse_range(prm: Param, marker: dict, positions: Positions, at: tuple, file: str) -> None:
    kind = prm.kind
    rng = marker[kind]
    if not isinstance(rng, list) or len(rng) != 2:
        raise _err(f"{kind} needs [low, high], got {rng!r}", positions, at + (kind,), file)
    integer = kind == "int"
    prm.low = _number(rng[0], f"{kind} low", positions, at + (kind,), file, integer=integer)
    prm.high = _number(rng[1], f"{kind} high", positions, at + (kind,), file, integer=integer)
    if prm.low > prm.high:
        raise _err(f"low {rng[0]} is greater than high {rng[1]}", positions, at + (kind,), file)
    if "step" in marker:
        prm.step = _number(marker["step"], "step", positions, at + ("step",), file, integer=integer)
        if prm.step <= 0:
            raise _err("step must be > 0", positions, at + ("step",), file)
    log = marker.get("log", False)
    if not isinstance(log, bool):
        raise _err(f"log must be true or false, got {log!r}", positions, at + ("log",), file)
    prm.log = log
    if log and (prm.low <= 0 or prm.step):
        raise _err("log: true needs low > 0 and no step", positions, at + ("log",), file)


def _later_names(positions: Positions, name: str) -> list[str]:
    keys = [p[1] for p in positions if len(p) == 2 and p[0] == "space"]
    return [str(k) for k in keys[keys.index(name) + 1:]] if name in keys else []


def _check_target(path: tuple, base: dict, positions: Positions, at: tuple, file: str) -> None:
    """The field must be able to exist in the spec: every key on the way is in the base or a field
    the language knows there (``fields_at``; component options are free-form), and every list index
    is in range. A missing mapping (e.g. ``head`` when the base uses the default head) is created."""
    node: Any = base
    for i, key in enumerate(path):
        here = path[:i]
        if isinstance(node, str) and isinstance(key, str):      # a component name: {type: name, ...}
            node = {}
            continue
        if isinstance(node, list):
            if not isinstance(key, int) or not -len(node) <= key < len(node):
                raise _err(f"'{format_path(path)}': index {key} is out of range for '{format_path(here)}' "
                           f"(length {len(node)})", positions, at, file)
            node = node[key]
            continue
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise _err(f"'{format_path(path)}': '{format_path(here)}' is a {type(node).__name__}, not a "
                       f"mapping or list", positions, at, file)
        known = fields_at(here) if not any(isinstance(k, int) for k in here) or here[:1] == ("stages",) else None
        if key not in node and known is not None and key not in known:
            raise _err(f"'{format_path(path)}': '{format_path(path[:i + 1])}' is not a field of the spec"
                       f"{did_you_mean(key, known)}", positions, at, file)
        node = node.get(key)
