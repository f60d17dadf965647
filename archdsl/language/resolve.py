"""``extends:`` inheritance and dotted ``--set`` overrides, on plain data with a positions table.

Rules (also in docs/language.md):

* ``extends: base.yaml`` or ``extends: [a.yaml, b.yaml]``: paths relative to the file that writes
  them; bases are merged in order, then this file over them. Chains are allowed; a cycle is an
  error naming the chain ``a.yaml -> b.yaml -> a.yaml``.
* Deep merge: mappings merge key by key; lists and scalars are replaced. ``key: null`` in an
  extending file (or ``--set key=null``) deletes the inherited key. A component given with a
  different ``type`` replaces the inherited one entirely (its options are not mixed in); a mapping
  without ``type`` over a name (``mixer: {input_gate: true}`` over ``mixer: linear_attention``) keeps
  the name and adds the options.
* ``--set a.b.c=VALUE``: VALUE is parsed as YAML (``yaml.safe_load`` semantics, with the loader's
  bounds); parts that are integers index
  lists (``stages.depths.0=3``). Keys of the schema are always settable; an unknown schema key is an
  error with a did-you-mean. Component options are free-form: a new option may be added, except
  when it looks like a misspelling of an existing one (did-you-mean); ``+mixer.opt=VALUE`` adds it
  anyway. Positions of overrides read ``<--set>:N`` where N counts the ``--set`` flags from 1.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from archdsl.errors import SpecError, did_you_mean
from archdsl.language.limits import limit_hint, limits
from archdsl.language.schema import fields_at
from archdsl.language.yaml_loader import (
    PathT,
    Pos,
    Positions,
    format_path,
    load_value,
    load_yaml_file,
    parse_path,
)

__all__ = ["resolve_file", "resolve_data", "deep_merge", "apply_overrides", "COMPONENT_PATHS"]

SET_FILE = "<--set>"

COMPONENT_KEYS = ("stem", "downsample", "block", "mixer", "head")
COMPONENT_PATHS = {(k,) for k in COMPONENT_KEYS}


def _is_component_path(path: PathT) -> bool:
    return path in COMPONENT_PATHS or (len(path) == 4 and path[:2] == ("stages", "override")
                                       and path[3] in ("block", "mixer"))


def _drop_prefix(positions: Positions, prefix: PathT) -> None:
    n = len(prefix)
    for p in [p for p in positions if p[:n] == prefix]:
        del positions[p]


def _copy_prefix(dst: Positions, src: Positions, prefix: PathT) -> None:
    n = len(prefix)
    for p, pos in src.items():
        if p[:n] == prefix:
            dst[p] = pos


def deep_merge(base: Any, base_pos: Positions, over: Any, over_pos: Positions, path: PathT = ()) -> Any:
    """Merge ``over`` onto ``base`` (both plain data) and update ``base_pos`` in place so every path
    points at the file that wrote its final value. Returns the merged value (``base`` is not kept)."""
    if isinstance(base, str) and isinstance(over, dict) and "type" not in over and _is_component_path(path):
        base = {"type": base}
    replace = not (isinstance(base, dict) and isinstance(over, dict))
    if not replace and _is_component_path(path) and "type" in over and over.get("type") != base.get("type"):
        replace = True
    if replace:
        _drop_prefix(base_pos, path)  # drop the inherited subtree
        if path in over_pos:
            base_pos[path] = over_pos[path]
        _copy_prefix(base_pos, over_pos, path)
        return copy.deepcopy(over)
    out = dict(base)
    for k, v in over.items():
        kp = path + (k,)
        if v is None:
            out.pop(k, None)
            _drop_prefix(base_pos, kp)
            continue
        out[k] = deep_merge(out.get(k), base_pos, v, over_pos, kp)
        if kp in over_pos:
            base_pos[kp] = over_pos[kp]
    return out


def _display_join(display_dir: str, rel: str) -> str:
    joined = os.path.normpath(os.path.join(display_dir, rel)) if display_dir else os.path.normpath(rel)
    return joined


def _extends_list(data: dict, positions: Positions, file: str) -> list[tuple[str, PathT]]:
    ext = data.get("extends")
    if ext is None:
        return []
    if isinstance(ext, str):
        return [(ext, ("extends",))]
    if isinstance(ext, list) and ext and all(isinstance(e, str) for e in ext):
        return [(e, ("extends", i)) for i, e in enumerate(ext)]
    pos = positions.get(("extends",), Pos(file))
    raise SpecError(f"expected a file path or a list of file paths, got {ext!r}", **pos.kwargs(), path="extends")


def resolve_data(data: dict, positions: Positions, *, display: str, real_dir: Path, display_dir: str,
                 chain: tuple[tuple[str, str], ...] = (), _reads: Optional[list] = None) -> tuple[dict, Positions]:
    """Resolve the ``extends:`` of already-loaded data; returns merged ``(data, positions)``
    without the ``extends`` key. ``_reads`` counts the base files read (one list per resolution)."""
    reads = _reads if _reads is not None else [0]
    bases = _extends_list(data, positions, display)
    if not bases:
        out = {k: v for k, v in data.items() if k != "extends"}
        pos = dict(positions)
        _drop_prefix(pos, ("extends",))
        return out, pos
    merged: Any = {}
    merged_pos: Positions = {}
    for rel, at in bases:
        where = positions.get(at) or positions.get(("extends",)) or Pos(display)
        real = Path(os.path.realpath(real_dir / rel))  # never raises on a symlink loop (opening it does)
        shown = _display_join(display_dir, rel)
        seen = [r for r, _ in chain]
        reads[0] += 1
        if reads[0] > limits().max_extends_files:
            raise SpecError(f"extends reads too many files: more than {limits().max_extends_files} "
                            f"{limit_hint('max_extends_files')}", **where.kwargs(), path=format_path(at))
        if len(chain) >= limits().max_extends_chain:
            raise SpecError(f"extends chain too long: more than {limits().max_extends_chain} files "
                            f"{limit_hint('max_extends_chain')}", **where.kwargs(), path=format_path(at))
        if str(real) in seen:
            names = [s for _, s in chain] + [shown]
            raise SpecError("extends cycle: " + " -> ".join(names[seen.index(str(real)):]), **where.kwargs(),
                            path=format_path(at))
        if not os.path.lexists(real):
            raise SpecError(f"cannot extend '{rel}': file not found ({shown})", **where.kwargs(),
                            path=format_path(at))
        try:
            bdata, bpos = load_yaml_file(real, display=shown)
        except SpecError as e:
            if e.line is not None:  # an error inside the base file: located there
                raise
            raise SpecError(f"cannot extend '{rel}': {e.message}", **where.kwargs(), path=format_path(at)) from None
        bdata, bpos = resolve_data(bdata, bpos, display=shown, real_dir=real.parent,
                                   display_dir=os.path.dirname(shown), chain=chain + ((str(real), shown),),
                                   _reads=reads)
        merged = deep_merge(merged, merged_pos, bdata, bpos, ())
    own = {k: v for k, v in data.items() if k != "extends"}
    own_pos = dict(positions)
    _drop_prefix(own_pos, ("extends",))
    root = own_pos.get(())
    merged = deep_merge(merged, merged_pos, own, own_pos, ())
    if root is not None:
        merged_pos[()] = root
    return merged, merged_pos


def resolve_file(path: str | Path) -> tuple[dict, Positions, str]:
    """Load a spec file and resolve its ``extends:`` chain -> ``(data, positions, display_name)``."""
    display = str(path)
    data, positions = load_yaml_file(path, display=display)
    real = Path(os.path.realpath(path))
    data, positions = resolve_data(data, positions, display=display, real_dir=real.parent,
                                   display_dir=os.path.dirname(display), chain=((str(real), display),))
    return data, positions, display


# ---------------------------------------------------------------- --set overrides
def _split(text: str, n: int) -> tuple[PathT, bool, str]:
    where = Pos(SET_FILE, n, None)
    if not isinstance(text, str) or "=" not in text:
        raise SpecError(f"expected KEY=VALUE, got {text!r}", **where.kwargs())
    key, value = text.split("=", 1)
    key = key.strip()
    force = key.startswith("+")
    key = key[1:] if force else key
    if not key or any(not part for part in key.split(".")):
        raise SpecError(f"bad key in {_short(text)}: expected dotted keys like mixer.heads or stages.depths.0",
                        **where.kwargs())
    depth = limits().max_yaml_depth
    if key.count(".") >= depth:
        raise SpecError(f"key path too deep: more than {depth} parts {limit_hint('max_yaml_depth')}",
                        **where.kwargs())
    return parse_path(key), force, value


def _short(text: str, n: int = 60) -> str:
    """``repr`` of a user string, cut to about ``n`` characters for a one-line message."""
    r = repr(text)
    return r if len(r) <= n else r[:n - 4] + "...'"


def _key_in(d: dict, part: Any) -> Any:
    """The key of ``d`` that ``part`` names (``"3"`` finds an int key 3), or ``part`` itself."""
    if part in d:
        return part
    alt = str(part) if isinstance(part, int) else (int(part) if isinstance(part, str) and part.lstrip("-").isdigit()
                                                   else None)
    return alt if alt is not None and alt in d else part


def apply_overrides(data: dict, positions: Positions, overrides: Iterable[str]) -> None:
    """Apply ``--set`` strings in order (in place). Raises :class:`SpecError` located at ``<--set>:N``."""
    for n, text in enumerate(overrides, start=1):
        path, force, raw_value = _split(text, n)
        where = Pos(SET_FILE, n, None)
        try:
            value = load_value(raw_value, SET_FILE) if raw_value.strip() else ""
        except SpecError as e:
            problem = getattr(e, "detail", None) or e.message
            raise SpecError(f"cannot parse the value {_short(raw_value)}: {problem}", **where.kwargs(),
                            path=format_path(path)) from None
        _set_path(data, positions, path, value, force, where)


def _set_path(data: dict, positions: Positions, path: PathT, value: Any, force: bool, where: Pos) -> None:
    cur: Any = data
    done: PathT = ()
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(cur, str) and _is_component_path(done):
            # mixer.normalize=false on `mixer: linear_attention` -> {type: linear_attention, normalize: false}
            cur = {"type": cur}
            _put(data, done, cur)
        if isinstance(cur, list):
            if not (isinstance(part, int) and -len(cur) <= part < len(cur)):
                raise SpecError(f"'{format_path(done)}' is a list of {len(cur)} items; "
                                f"'{part}' is not a valid index", **where.kwargs(), path=format_path(path))
            key: Any = part % len(cur)
        elif isinstance(cur, dict):
            key = _key_in(cur, part)
            if done == ("stages", "override") and isinstance(key, str) and key.lstrip("-").isdigit():
                key = int(key)
            if key not in cur:
                fields = fields_at(done)
                if fields is not None:
                    if key not in fields:
                        full = [format_path(done + (f,)) for f in fields]
                        raise SpecError(f"unknown key '{format_path(done + (key,))}'"
                                        f"{did_you_mean(format_path(done + (key,)), full)}",
                                        **where.kwargs(), path=format_path(path))
                elif done == ("stages", "override"):
                    if not isinstance(key, int):
                        raise SpecError(f"stage overrides are keyed by stage index, got '{key}'",
                                        **where.kwargs(), path=format_path(path))
                elif not force:
                    existing = [str(k) for k in cur]
                    hint = did_you_mean(str(key), existing)
                    if hint:
                        full = format_path(done + (key,))
                        raise SpecError(f"unknown key '{full}'{did_you_mean(full, [format_path(done + (k,)) for k in cur])}"
                                        f"; to add it as a new key write --set +{format_path(path)}=...",
                                        **where.kwargs(), path=format_path(path))
                if not last:
                    cur[key] = {}
        else:
            kind = "missing" if cur is None else f"a {type(cur).__name__}"
            raise SpecError(f"cannot set '{format_path(path)}': '{format_path(done)}' is {kind}, not a mapping or list",
                            **where.kwargs(), path=format_path(path))
        if last:
            _drop_prefix(positions, done + (key,))
            if value is None and isinstance(cur, dict):
                cur.pop(key, None)
            else:
                cur[key] = copy.deepcopy(value)
                positions[done + (key,)] = where
            return
        done = done + (key,)
        cur = cur[key]


def _put(data: dict, path: PathT, value: Any) -> None:
    cur: Any = data
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
