"""The archdsl spec language: YAML with positions -> resolved, validated :class:`ModelSpec`.

Public API::

    load_spec(path, overrides=(), *, image_size=None, allow_plugins=None) -> ModelSpec   # resolved + validated
    load_spec_dict(data, source="<dict>", overrides=(), *, base_dir=None, allow_plugins=None) -> ModelSpec
    import_plugins(spec, allow_plugins=None)   # the spec's `plugins:`, only with an opt-in
    dump_resolved(spec) -> str       # standalone YAML: extends merged, overrides applied, templates inlined
    spec_hash(spec) -> str           # 16 hex digits of the architecture (name and meta excluded)
    spec.locate(path) -> dict        # SpecError location kwargs {file, line, col, path}
    spec.error(path, msg) -> SpecError
    spec.source_file, spec.stage_plan(), spec.to_dict()
    load_template(ref, spec, at=("block",)) -> BlockTemplate; block_kind(ref, spec) -> "template"|"python"
    substitute(node, variables, locate)   # $var substitution with located errors
    SpecError

Pipeline of :func:`load_spec`: load YAML (positions) -> resolve ``extends:`` -> apply ``--set``
overrides -> pydantic validation -> cross-field checks -> import ``plugins`` -> load and check every
block template the spec uses. Each step raises one located :class:`SpecError`.

Plugins run code, and a spec is untrusted input: ``plugins:`` is imported only with an opt-in from
the person running archdsl (``allow_plugins=True``, ``archdsl --allow-plugins``, or the environment
variable ``ARCHDSL_ALLOW_PLUGINS=1``); without it loading stops at the ``plugins:`` line. The spec's
own folder is not put on ``sys.path``. Every size is bounded (:mod:`archdsl.language.limits`).
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import ValidationError

from archdsl.errors import SpecError, did_you_mean
from archdsl.language.limits import PLUGINS_ENV, plugins_allowed
from archdsl.language.resolve import apply_overrides, resolve_data, resolve_file
from archdsl.language.schema import (
    ModelSpec,
    check_semantics,
    json_schema,
    locate_in,
    ref_parts,
    validation_error_to_spec_error,
)
from archdsl.language.templates import BlockTemplate, block_kind, load_template, substitute
from archdsl.language.yaml_loader import Pos, Positions, format_path, load_yaml, parse_path
from archdsl.registry import load_plugins

__all__ = ["load_spec", "load_spec_dict", "import_plugins", "dump_resolved", "resolved_data", "spec_hash", "ModelSpec", "SpecError",
           "BlockTemplate", "load_template", "block_kind", "substitute", "json_schema", "ref_parts",
           "did_you_mean", "load_yaml", "format_path", "parse_path"]


def load_spec(path: str | Path, overrides: Iterable[str] = (), *, image_size: Optional[int] = None,
              allow_plugins: Optional[bool] = None) -> ModelSpec:
    """Load, resolve and validate a spec file. ``overrides`` are ``--set`` strings (``"mixer.heads=4"``);
    ``image_size`` replaces the spec's ``image_size``; ``allow_plugins`` lets the spec's ``plugins:``
    be imported (default: the ``ARCHDSL_ALLOW_PLUGINS`` environment variable). Raises :class:`SpecError`."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"load_spec() takes a file path, got {type(path).__name__}")
    data, positions, display = resolve_file(path)
    return _finish(data, positions, display, overrides, image_size, default_name=Path(path).stem,
                   allow_plugins=allow_plugins)


def load_spec_dict(data: dict, source: str = "<dict>", overrides: Iterable[str] = (), *,
                   base_dir: Optional[str | Path] = None, image_size: Optional[int] = None,
                   allow_plugins: Optional[bool] = None) -> ModelSpec:
    """Validate a spec given as plain data (for programmatic use, e.g. search). ``extends:`` paths
    resolve against ``base_dir`` (default: the current directory). Errors name ``source``;
    ``allow_plugins`` as for :func:`load_spec`."""
    if not isinstance(data, dict):
        raise SpecError(f"a spec is a mapping of keys, got {type(data).__name__}", file=source)
    data = copy.deepcopy(data)
    # every path written by the dict is "at" the source (so inherited positions are replaced)
    positions: Positions = {p: Pos(source) for p in _all_paths(data)}
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    data, positions = resolve_data(data, positions, display=source, real_dir=base.resolve(),
                                   display_dir=str(base_dir) if base_dir is not None else "")
    return _finish(data, positions, source, overrides, image_size,
                   default_name=Path(source).stem if not source.startswith("<") else "model",
                   allow_plugins=allow_plugins)


def _all_paths(node: Any, prefix: tuple = ()) -> Iterable[tuple]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _all_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _all_paths(v, prefix + (i,))


def _finish(data: dict, positions: Positions, display: str, overrides: Iterable[str],
            image_size: Optional[int], default_name: str, allow_plugins: Optional[bool]) -> ModelSpec:
    overrides = list(overrides or ())
    if image_size is not None:
        overrides.append(f"image_size={int(image_size)}")
    apply_overrides(data, positions, overrides)
    if "name" not in data or data["name"] is None:
        data["name"] = default_name

    def locate(p: Any) -> dict:
        return locate_in(positions, p, display)

    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as e:
        raise validation_error_to_spec_error(e, data, locate) from None
    spec._positions = positions
    spec._source = display
    spec._raw = data
    spec._templates = {}
    check_semantics(spec)
    import_plugins(spec, allow_plugins)
    for entry in spec.stage_plan():
        ref = entry.block
        if block_kind(ref, spec) == "template":
            load_template(ref, spec, at=entry.block_path)
    return spec


def _not_on_path_hint(spec: ModelSpec, top: str) -> str:
    """When ``top`` sits next to the spec: say that this folder is not on the path, and how to add it."""
    src = spec.source_file
    folder = os.path.dirname(os.path.abspath(src)) if not src.startswith("<") else os.getcwd()
    if os.path.exists(os.path.join(folder, top + ".py")) or os.path.isdir(os.path.join(folder, top)):
        return (f"; the spec's folder {folder} is not on the Python path: add it explicitly with "
                f"PYTHONPATH={folder}")
    return ""


def import_plugins(spec: ModelSpec, allow_plugins: Optional[bool] = None) -> None:
    """Import the spec's ``plugins:`` (so their ``@register`` calls run), only with an opt-in:
    ``allow_plugins`` or ``ARCHDSL_ALLOW_PLUGINS=1``. A module that cannot be found is reported
    first (finding a top-level module runs none of its code); without the opt-in, a located error
    says how to allow plugins; a module that fails while importing is a located error too."""
    for i, mod in enumerate(spec.plugins):
        top = mod.split(".")[0]
        if top not in sys.modules and importlib.util.find_spec(top) is None:
            raise spec.error(("plugins", i), f"cannot import plugin module '{mod}': No module named '{top}'"
                                             f"{_not_on_path_hint(spec, top)}")
    if spec.plugins and not plugins_allowed(allow_plugins):
        raise spec.error(("plugins",), f"this spec imports Python code (plugins: {', '.join(spec.plugins)}); "
                                       f"plugins run only with an opt-in: pass --allow-plugins (or set "
                                       f"{PLUGINS_ENV}=1; Python: allow_plugins=True) if you trust them")
    for i, mod in enumerate(spec.plugins):
        try:
            load_plugins([mod])
        except SpecError as e:
            raise e.located(**spec.locate(("plugins", i))) from None
    spec._plugins_imported = True


# ---------------------------------------------------------------- resolved output
def resolved_data(spec: ModelSpec) -> dict:
    """The spec as standalone plain data: ``extends`` merged, overrides applied, and every template
    the spec uses inlined under ``blocks:`` (refs to template files renamed to the inline key)."""
    data = spec.to_dict()
    data.pop("extends", None)
    blocks = dict(data.get("blocks") or {})
    renames: dict[str, str] = {}
    for entry in spec.stage_plan():
        name, _ = ref_parts(entry.block)
        if block_kind(entry.block, spec) != "template" or name in blocks or name in renames:
            continue
        tpl = load_template(entry.block, spec, at=entry.block_path)
        key = name
        if tpl.origin == "file":
            key = tpl.name
            i = 2
            while key in blocks:
                key = f"{tpl.name}_{i}"
                i += 1
            renames[name] = key
        blocks[key] = tpl.to_data()
    if blocks:
        data["blocks"] = blocks

    def rename(ref: Any) -> Any:
        n, opts = ref_parts(ref)
        if n not in renames:
            return ref
        return renames[n] if isinstance(ref, str) else {"type": renames[n], **opts}

    if renames:
        data["block"] = rename(data["block"])
        for ov in ((data.get("stages") or {}).get("override") or {}).values():
            if isinstance(ov, dict) and isinstance(ov.get("block"), (str, dict)) and (
                    isinstance(ov["block"], str) or "type" in ov["block"]):
                ov["block"] = rename(ov["block"])
    return data


def dump_resolved(spec: ModelSpec) -> str:
    """YAML text of :func:`resolved_data`; loading it gives the same model (same parameter count,
    and the same weights for the same seed)."""
    header = f"# archdsl resolved spec (from {spec.source_file}); stands alone: no extends, templates inlined\n"
    return header + yaml.safe_dump(resolved_data(spec), sort_keys=False, default_flow_style=None, width=110)


def _canon(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def spec_hash(spec: ModelSpec) -> str:
    """A stable 16-hex-digit hash of what determines the model (``name`` and ``meta`` excluded;
    templates included by content, so editing a template changes the hash)."""
    data = resolved_data(spec)
    data.pop("name", None)
    data.pop("meta", None)
    text = json.dumps(_canon(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
