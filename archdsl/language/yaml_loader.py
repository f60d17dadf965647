"""YAML loading with ``yaml.safe_load`` semantics that keeps a position for every key and item.

The result is plain data (``dict`` / ``list`` / scalars, exactly what ``yaml.safe_load`` returns)
plus a :data:`Positions` table that maps a *path* to where it was written::

    data, pos = load_yaml_file("specs/mlla_t.yaml")
    pos[("stages", "heads")]      # Pos(file='specs/mlla_t.yaml', line=7, col=3) -- the key `heads`
    pos[("stages", "heads", 2)]   # the third list item
    pos[()]                       # the start of the document

A path is a tuple of mapping keys (as loaded: ``str``, ``int``, ...) and list indices (``int``).
For a mapping entry the position is that of its *key*; for a list item it is the item's start.
Lines and columns are 1-based.

Differences from plain ``yaml.safe_load`` (all reported as :class:`SpecError`):
duplicate keys are rejected with both positions, syntax errors carry ``FILE:LINE:COL``, tags other
than the safe ones fail as in ``safe_load``, recursive aliases and alias bombs are refused. One
deliberate difference in values: ``2e-3`` / ``1e6`` / ``4.69e13`` are floats (YAML 1.2), not strings.

Bounds (:mod:`archdsl.language.limits`), all checked while reading, before any large structure
exists: a file is read only when it is a regular file (not a FIFO, device, directory or ``/proc``
file) and at most ``max_file_bytes`` long; nesting deeper than ``max_yaml_depth`` and more than
``max_yaml_nodes`` nodes stop the parser where they happen; control characters are a located error.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Dict, NamedTuple, Tuple

import yaml

from archdsl.errors import SpecError
from archdsl.language.limits import limit_hint, limits

__all__ = ["Pos", "Positions", "PathT", "load_yaml", "load_yaml_file", "load_value", "format_path", "parse_path"]

PathT = Tuple[Any, ...]


class Pos(NamedTuple):
    """Where a key or value was written (1-based line and column)."""

    file: str
    line: int | None = None
    col: int | None = None

    def kwargs(self) -> dict:
        """Location keyword arguments for :class:`SpecError`."""
        return {"file": self.file, "line": self.line, "col": self.col}


Positions = Dict[PathT, Pos]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_PSEUDO_ROOTS = ("/proc/", "/sys/", "/dev/")  # files there are not what their size says


def format_path(path: PathT) -> str:
    """``("stages", "depths", 0)`` -> ``"stages.depths.0"``."""
    return ".".join(str(p) for p in path)


def parse_path(text: str) -> PathT:
    """``"stages.depths.0"`` -> ``("stages", "depths", 0)`` (digit parts become ints)."""
    out: list[Any] = []
    for part in str(text).split("."):
        out.append(int(part) if part.lstrip("-").isdigit() else part)
    return tuple(out)


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to compose nodes and construct scalars (no python tags). Composing is
    bounded: depth and node count are checked at each node, while the events arrive.

    One fix over YAML 1.1: floats with an exponent but no dot or no exponent sign (``2e-3``, ``1e6``,
    ``4.69e13``) are floats, as in YAML 1.2 and JSON (``safe_load`` reads them as strings), so no reader of specs, spaces or recipes
    converts numeric strings by hand."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file
        bounds = limits()
        self.max_depth, self.max_nodes = bounds.max_yaml_depth, bounds.max_yaml_nodes
        self.depth = 0
        self.nodes = 0

    def _too_deep(self) -> SpecError:
        return SpecError(f"nesting too deep: more than {self.max_depth} levels {limit_hint('max_yaml_depth')}",
                         **_mark_pos(self.file, self.get_mark()).kwargs())

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # the scanner looks ahead over every open `[` / `{` (quadratic): stop at the bound
        if self.flow_level >= self.max_depth:
            raise self._too_deep()
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= self.max_depth:
            raise self._too_deep()
        return super().add_indent(column)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise SpecError(f"document too large: more than {self.max_nodes} YAML nodes "
                            f"{limit_hint('max_yaml_nodes')}", **_mark_pos(self.file, self.peek_event().start_mark).kwargs())
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            self.depth += 1
            if self.depth > self.max_depth:
                raise self._too_deep()
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1
        return super().compose_node(parent, index)


# YAML 1.2 floats: the 1.1 resolver needs a '.' and a signed exponent; add the other exponent forms first.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+.0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", _FLOAT_12))


def load_value(text: str, file: str = "<--set>") -> Any:
    """One YAML value (a ``--set`` value) read like spec files are (``2e-3`` is a float, the same
    bounds); a problem is a :class:`SpecError` at ``file``."""
    return load_yaml(text, file)[0]


def _mark_pos(file: str, mark: Any) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1) if mark is not None else Pos(file)


def _reader_error(err: yaml.reader.ReaderError, text: str, file: str) -> SpecError:
    """A character YAML does not allow (NUL, BEL, ESC, ...), located at its line and column."""
    before = text[:err.position]
    line = before.count("\n") + 1
    col = err.position - (before.rfind("\n") + 1) + 1
    char = err.character if isinstance(err.character, str) else chr(err.character)
    return SpecError(f"invalid YAML: control character U+{ord(char):04X} is not allowed (write it as an escape "
                     f"in a double-quoted string)", file=file, line=line, col=col)


def _yaml_error(err: yaml.YAMLError, file: str) -> SpecError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    msg = f"invalid YAML: {context}, {problem}" if context else f"invalid YAML: {problem}"
    msg = " ".join(msg.split())
    out = SpecError(msg, **_mark_pos(file, mark).kwargs())
    out.detail = " ".join(str(problem).split())  # the problem alone (`--set` values quote it)
    return out


class _Builder:
    def __init__(self, loader: _Loader, file: str):
        self.loader = loader
        self.file = file
        self.positions: Positions = {}
        self.count = 0
        self.stack: set[int] = set()
        self.max_nodes = limits().max_yaml_expanded

    def build(self, node: yaml.Node, path: PathT) -> Any:
        self.count += 1
        if self.count > self.max_nodes:
            raise SpecError(f"document too large: more than {self.max_nodes} nodes after alias expansion "
                            f"{limit_hint('max_yaml_expanded')}", **_mark_pos(self.file, node.start_mark).kwargs())
        if id(node) in self.stack:
            raise SpecError("recursive YAML alias", **_mark_pos(self.file, node.start_mark).kwargs())
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            self.stack.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self.stack.discard(id(node))
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            self.stack.add(id(node))
            try:
                out = []
                for i, item in enumerate(node.value):
                    self.positions[path + (i,)] = _mark_pos(self.file, item.start_mark)
                    out.append(self.build(item, path + (i,)))
                return out
            finally:
                self.stack.discard(id(node))
        try:  # scalars and the other safe tags (!!set, !!omap, timestamps...) as safe_load does
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise _yaml_error(e, self.file) from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid YAML value: {e}", **_mark_pos(self.file, node.start_mark).kwargs()) from None

    def _mapping(self, node: yaml.MappingNode, path: PathT) -> dict:
        n_own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)  # `<<:` merge keys, as safe_load does
        except yaml.YAMLError as e:
            raise _yaml_error(e, self.file) from None
        n_merged = len(node.value) - n_own  # merged pairs come first; own keys override them
        out: dict = {}
        first: dict = {}
        for i, (key_node, value_node) in enumerate(node.value):
            kpos = _mark_pos(self.file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("a mapping key must be a plain scalar (not a list or mapping)", **kpos.kwargs(),
                                path=format_path(path) or None)
            key = self.build(key_node, path)
            try:
                hash(key)
            except TypeError:
                raise SpecError(f"unhashable mapping key {key!r}", **kpos.kwargs()) from None
            if i < n_merged:
                self.positions[path + (key,)] = kpos
                out[key] = self.build(value_node, path + (key,))
                continue
            if key in first:
                raise SpecError(f"duplicate key '{key}' (first at line {first[key].line})", **kpos.kwargs(),
                                path=format_path(path + (key,)))
            first[key] = kpos
            if key in out:  # overrides a merged (`<<:`) entry: forget that entry's positions
                n = len(path) + 1
                for p in [p for p in self.positions if p[:n] == path + (key,)]:
                    del self.positions[p]
            self.positions[path + (key,)] = kpos
            out[key] = self.build(value_node, path + (key,))
        return out


def load_yaml(text: str, file: str = "<string>") -> tuple[Any, Positions]:
    """Parse one YAML document like ``yaml.safe_load`` and return ``(data, positions)``.

    An empty document gives ``(None, {(): Pos(file, 1, 1)})``. Raises :class:`SpecError` located at
    ``file:line:col`` for syntax errors, duplicate keys, unsafe tags and multiple documents.
    """
    try:
        loader = _Loader(text, file)
    except yaml.reader.ReaderError as e:
        raise _reader_error(e, text, file) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.reader.ReaderError as e:
            raise _reader_error(e, text, file) from None
        except yaml.YAMLError as e:
            raise _yaml_error(e, file) from None
        if node is None:
            return None, {(): Pos(file, 1, 1)}
        builder = _Builder(loader, file)
        builder.positions[()] = _mark_pos(file, node.start_mark)
        data = builder.build(node, ())
        return data, builder.positions
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, *, display: str | None = None, mapping: bool = True) -> tuple[Any, Positions]:
    """Read and parse ``path``; ``display`` is the file name used in positions and errors.

    With ``mapping=True`` (the default) a top level that is not a mapping is a :class:`SpecError`.
    """
    shown = display if display is not None else str(path)
    try:
        text = read_text_file(path, shown).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not a UTF-8 text file: {e.reason}", file=shown) from None
    data, positions = load_yaml(text, shown)
    if mapping and not isinstance(data, dict):
        got = "an empty document" if data is None else f"a {_kind(data)}"
        raise SpecError(f"the top level of a spec must be a mapping of keys, got {got}",
                        **positions[()].kwargs())
    return data, positions


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_text_file(path: str | Path, shown: str) -> bytes:
    """The bytes of a spec-like file, refusing what is not a plain file: directories, FIFOs (which
    would block), devices (``/dev/zero`` never ends), ``/proc`` and ``/sys`` files, symlink loops,
    and files over ``max_file_bytes``. Every refusal is a :class:`SpecError` naming ``shown``."""
    cap = limits().max_file_bytes
    real = os.path.realpath(path)
    root = next((r for r in _PSEUDO_ROOTS if real.startswith(r)), None)
    if root is not None:
        raise SpecError(f"refusing to read {shown}: files under {root} are system files, not specs", file=shown)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SpecError(f"file not found: {shown}", file=shown) from None
    except OSError as e:
        raise SpecError(f"cannot read {shown}: {e.strerror or e}", file=shown) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SpecError(f"is {_file_kind(info.st_mode)}, not a YAML file: {shown}", file=shown)
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > cap:
            raise SpecError(f"file too large: {info.st_size} bytes {limit_hint('max_file_bytes')}", file=shown)
        try:
            data = fh.read(cap + 1)
        except OSError as e:
            raise SpecError(f"cannot read {shown}: {e.strerror or e}", file=shown) from None
    if len(data) > cap:
        raise SpecError(f"file too large: more than {cap} bytes {limit_hint('max_file_bytes')}", file=shown)
    return data


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "mapping"
    return type(v).__name__
