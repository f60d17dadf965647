"""Block templates: loading, structural validation and ``$variable`` substitution.

A template (``archdsl/blocks/NAME.yaml``, an entry of a spec's ``blocks:``, or a ``.yaml`` path)::

    block: mlla
    params: {mlp_ratio: 4.0, kernel: int}   # name -> default, or a type name for a required one
    body:                                     # a node
      - residual: {dwconv: {kernel: 3}, name: cpe1}
      - residual: [{norm: layernorm}, {mlp: {ratio: $mlp_ratio}}, drop_path]

Nodes: a list (sequence); a bare string (a primitive without argument, or ``$var``); a mapping with
exactly one primitive/combinator key plus an optional ``name:``. Combinators: ``seq: [nodes]``,
``residual: node``, ``branch: {path: node, ..., merge: mul|add|concat}``. Which primitives exist is
the compiler's business (registry kind ``primitive``); this module checks the structure.

Substitution (done per stage by the compiler through :meth:`BlockTemplate.instantiate` or
:func:`substitute`): a string that is exactly ``$name`` becomes the variable's value (any type);
a string with ``$names``, numbers, ``+ - * / // % **``, parentheses and ``int() float() round() min()
max()`` is evaluated as arithmetic (``$dim * 2``, ``int($dim * $mlp_ratio)``); any other string with
``$name`` in it is interpolated as text (``stage$stage``); ``$$`` is a literal ``$``. A string that
is exactly ``$name[i]...`` (each ``i`` an arithmetic expression) is an item of a list variable, of
any type (``$paths[$stage][$index]``: one value per block).
"""
from __future__ import annotations

import ast
import copy
import math
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from archdsl import registry
from archdsl.errors import SpecError, did_you_mean
from archdsl.language.limits import limit_hint, limits
from archdsl.language.schema import ref_parts
from archdsl.language.yaml_loader import PathT, Positions, format_path, load_yaml_file

__all__ = ["BlockTemplate", "load_template", "load_template_file", "template_from_data", "substitute",
           "validate_node", "builtin_template_names", "BUILTIN_VARIABLES", "COMBINATORS", "MERGES",
           "block_kind", "BUILTIN_DIR"]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "blocks"
BUILTIN_VARIABLES = ("dim", "heads", "mixer", "drop_path", "drop_rate", "stage", "index", "grid")
COMBINATORS = ("seq", "residual", "branch", "reuse")
MERGES = ("mul", "add", "concat")
TYPE_NAMES = ("int", "float", "number", "str", "bool", "list", "dict", "any")
_TEMPLATE_KEYS = ("block", "params", "body", "doc")
_VAR = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")
_INDEXED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\[\]]+\])+)")


@dataclass
class Required:
    """A declared parameter without default (``params: {kernel: int}``)."""

    type: str

    def __repr__(self) -> str:
        return f"<required {self.type}>"


@dataclass
class BlockTemplate:
    """A loaded, structurally valid block template.

    ``locate(path)`` gives SpecError location kwargs for a path *inside the template mapping*, e.g.
    ``("body", 1, "residual", 0)``; ``raw`` is the template mapping as written (for ``--resolved``).
    """

    name: str
    params: dict
    body: Any
    file: str
    origin: str  # "builtin" | "inline" | "file"
    positions: Positions = field(default_factory=dict, repr=False)
    raw: dict = field(default_factory=dict, repr=False)
    path_prefix: PathT = ()  # key path of the template inside its file (("blocks", name) for inline)

    def locate(self, path: PathT = ()) -> dict:
        """Location kwargs of ``path`` (relative to the template mapping), nearest known parent."""
        probe = tuple(path)
        shown = format_path(self.path_prefix + tuple(path))
        while True:
            if probe in self.positions:
                return {**self.positions[probe].kwargs(), "path": shown}
            if not probe:
                return {"file": self.file, "line": None, "col": None, "path": shown}
            probe = probe[:-1]

    def error(self, path: PathT, message: str) -> SpecError:
        return SpecError(message, **self.locate(path))

    def variables(self, options: Optional[dict] = None, builtins: Optional[dict] = None,
                  at: Any = None) -> dict:
        """The variables of one instantiation: declared defaults, then ``builtins`` (the
        :data:`BUILTIN_VARIABLES` ``dim``, ``heads``, ``mixer``, ... from the compiler), then
        ``options`` (the block ref's options, e.g. ``{type: mlla, mlp_ratio: 2}``). Unknown options
        and missing required params raise :class:`SpecError` located at ``at``: location kwargs, or a
        callable ``at(sub_path) -> kwargs`` so an unknown option points at its own key."""
        if at is None:
            at = self.locate(())
        where = at if callable(at) else (lambda sub, _a=at: _a)
        at = where(())
        out: dict = {}
        builtins = dict(builtins or {})
        options = dict(options or {})
        for k in options:
            if k not in self.params:
                known = sorted(self.params)
                raise SpecError(f"unknown option '{k}' for block '{self.name}'{did_you_mean(str(k), known)}; "
                                f"declared params: {', '.join(known) if known else '(none)'}", **where((k,)))
        for k, v in self.params.items():
            if not isinstance(v, Required):
                out[k] = copy.deepcopy(v)
        out.update(builtins)
        for k, v in options.items():
            decl = self.params[k]
            if isinstance(decl, Required):
                _check_type(k, v, decl.type, where((k,)))
            out[k] = copy.deepcopy(v)
        for k, v in self.params.items():
            if isinstance(v, Required):
                if k not in out:
                    raise SpecError(f"block '{self.name}' needs parameter '{k}' ({v.type}); "
                                    f"give it as {{type: {self.name}, {k}: ...}}", **at)
                _check_type(k, out[k], v.type, at)
        return out

    def instantiate(self, variables: dict) -> Any:
        """The body with every ``$var`` replaced (see :func:`substitute`)."""
        return substitute(self.body, variables, lambda p: self.locate(("body",) + tuple(p)))

    def to_data(self) -> dict:
        """The template as plain data (``block``, ``params``, ``body``) for a standalone spec."""
        out: dict = {"block": self.name}
        if self.raw.get("params"):
            out["params"] = copy.deepcopy(self.raw["params"])
        out["body"] = copy.deepcopy(self.raw["body"])
        return out


def _check_type(name: str, value: Any, typ: str, at: dict) -> None:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str), "bool": isinstance(value, bool),
        "list": isinstance(value, list), "dict": isinstance(value, dict), "any": True,
    }[typ]
    if not ok:
        raise SpecError(f"parameter '{name}' expects {typ}, got {value!r}", **at)


# ---------------------------------------------------------------- structure
def validate_node(node: Any, path: PathT, error: Callable[[PathT, str], SpecError]) -> None:
    """Check the node grammar; ``error(path, msg)`` builds the located SpecError to raise."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            validate_node(item, path + (i,), error)
        return
    if isinstance(node, str):
        if not node.strip():
            raise error(path, "expected a primitive name, got an empty string")
        if not (node.startswith("$") or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node)):
            raise error(path, f"expected a primitive name (like 'gelu' or 'identity'), got {node!r}")
        return
    if isinstance(node, dict):
        keys = [k for k in node if k != "name"]
        if len(keys) != 1:
            got = ", ".join(repr(k) for k in keys) if keys else "none"
            raise error(path, "a node mapping has exactly one primitive or combinator key plus an optional "
                              f"'name', got {got}")
        key = keys[0]
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise error(path + (key,), f"expected a primitive or combinator name, got {key!r}")
        if "name" in node:
            nm = node["name"]
            if not isinstance(nm, str) or not nm or "." in nm:
                raise error(path + ("name",), f"'name' must be a non-empty string without '.' (the module's "
                                              f"attribute name), got {nm!r}")
        arg = node[key]
        if key == "seq":
            if not isinstance(arg, list):
                raise error(path + (key,), f"'seq' takes a list of nodes, got {_kind(arg)}")
            validate_node(arg, path + (key,), error)
        elif key == "residual":
            if arg is None:
                raise error(path + (key,), "'residual' takes a node (x + f(x)), got nothing")
            validate_node(arg, path + (key,), error)
        elif key == "reuse":
            if not isinstance(arg, str) or not re.fullmatch(r"[^.\s]+", arg):
                raise error(path + (key,), f"'reuse' takes the name of a module of this block, got {_kind(arg)} {arg!r}")
            if "name" in node:
                raise error(path + ("name",), "a 'reuse' node takes no 'name': it runs the module named by 'reuse'")
        elif key == "branch":
            if not isinstance(arg, dict):
                raise error(path + (key,), "'branch' takes a mapping {path: node, ..., merge: mul|add|concat}, "
                                           f"got {_kind(arg)}")
            merge = arg.get("merge", "add")
            if merge not in MERGES:
                raise error(path + (key, "merge"), f"expected one of {', '.join(MERGES)}, got {merge!r}"
                                                   f"{did_you_mean(str(merge), MERGES)}")
            paths = [k for k in arg if k != "merge"]
            if not paths:
                raise error(path + (key,), "'branch' needs at least one path besides 'merge'")
            for p in paths:
                if not isinstance(p, str) or not p or "." in p:
                    raise error(path + (key, p), f"a branch path name must be a string without '.', got {p!r}")
                validate_node(arg[p], path + (key, p), error)
        return
    raise error(path, "expected a node: a list, a primitive name, or a mapping {primitive: argument}, "
                      f"got {_kind(node)} {node!r}")


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def template_from_data(data: Any, positions: Positions, *, file: str, origin: str, default_name: str,
                       prefix: PathT = ()) -> BlockTemplate:
    """Validate a template mapping (positions relative to it) and build a :class:`BlockTemplate`."""
    probe = BlockTemplate(default_name, {}, None, file, origin, positions, {}, prefix)
    err = probe.error
    if not isinstance(data, dict):
        raise err((), f"a block template is a mapping {{block, params, body}}, got {_kind(data)}")
    for k in data:
        if k not in _TEMPLATE_KEYS:
            raise err((k,), f"unknown key '{k}'{did_you_mean(str(k), _TEMPLATE_KEYS)}")
    name = data.get("block", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name):
        raise err(("block",), f"expected a template name, got {name!r}")
    if "body" not in data:
        raise err((), "missing key 'body' (the template's node)")
    params_raw = data.get("params") or {}
    if not isinstance(params_raw, dict):
        raise err(("params",), f"expected a mapping name -> default (or type), got {_kind(params_raw)}")
    params: dict = {}
    for k, v in params_raw.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise err(("params", k), f"a parameter name must be an identifier, got {k!r}")
        if k in BUILTIN_VARIABLES:
            raise err(("params", k), f"template param '{k}' shadows the built-in variable ${k}")
        params[k] = Required(v) if isinstance(v, str) and v in TYPE_NAMES else v
    body = data["body"]
    if body is None:
        raise err(("body",), "expected a node, got nothing")
    validate_node(body, ("body",), err)
    return BlockTemplate(name, params, body, file, origin, positions, data, prefix)


def load_template_file(path: str | Path, *, display: Optional[str] = None, origin: str = "file") -> BlockTemplate:
    """Load and validate a template file."""
    shown = display or str(path)
    data, positions = load_yaml_file(path, display=shown)
    return template_from_data(data, positions, file=shown, origin=origin, default_name=Path(path).stem)


def builtin_template_names() -> list[str]:
    """Names of the shipped templates (``archdsl/blocks/*.yaml``)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")) if BUILTIN_DIR.is_dir() else []


def _is_path_ref(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def block_kind(ref: Any, spec: Any) -> str:
    """``"template"`` or ``"python"`` for a block ref. Lookup order (as the compiler's): the spec's
    own ``blocks:``, a ``.yaml`` path, a Python ``block`` in the registry, ``archdsl/blocks/NAME.yaml``."""
    name, _ = ref_parts(ref)
    if name in (spec.blocks or {}) or _is_path_ref(name):
        return "template"
    if registry.has("block", name):
        return "python"
    return "template"  # a built-in template, or load_template reports the unknown name


def load_template(ref: Any, spec: Any, at: PathT = ("block",)) -> BlockTemplate:
    """The template a block ref names (see :func:`block_kind` for the lookup order). ``at`` is the
    key path of the ref in the spec (for errors, and so relative paths resolve against the file
    that wrote the ref). Cached per spec."""
    name, _ = ref_parts(ref)
    cache = getattr(spec, "_templates", None)
    if cache is not None and name in cache:
        return cache[name]
    inline = spec.blocks or {}
    if name in inline:
        prefix = ("blocks", name)
        n = len(prefix)
        sub = {p[n:]: pos for p, pos in spec.positions.items() if p[:n] == prefix}
        raw = spec._raw.get("blocks", {}).get(name)
        loc = spec.locate(prefix)
        tpl = template_from_data(raw, sub, file=loc["file"], origin="inline", default_name=name, prefix=prefix)
    elif _is_path_ref(name):
        loc = spec.locate(at)
        src = loc.get("file") or ""
        base = Path(os.path.realpath(src)).parent if src and not src.startswith("<") and os.path.lexists(src) \
            else Path.cwd()
        real = Path(os.path.realpath(base / name))  # never raises on a symlink loop (opening it does)
        if not os.path.lexists(real):
            raise SpecError(f"block template file not found: {name} (looked in {base})", **loc)
        display = str(Path(src).parent / name) if src and not src.startswith("<") else name
        tpl = load_template_file(real, display=display, origin="file")
    elif name in builtin_template_names():
        real = BUILTIN_DIR / f"{name}.yaml"
        tpl = load_template_file(real, display=f"archdsl/blocks/{name}.yaml", origin="builtin")
    else:
        known = sorted(set(inline) | set(builtin_template_names()) | set(registry.names("block")))
        raise SpecError(f"unknown block '{name}'{did_you_mean(name, known)}; "
                        f"known: {', '.join(known) if known else '(none)'}", **spec.locate(at))
    if cache is not None:
        cache[name] = tpl
    return tpl


# ---------------------------------------------------------------- substitution


def _bounded(v: Any) -> Any:
    """``v`` when it is a finite number within ``max_expr_magnitude``; else ValueError."""
    bound = limits().max_expr_magnitude
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"the result {v} is not a finite number")
    if abs(v) > bound:
        raise ValueError(f"a value exceeds {bound} in magnitude {limit_hint('max_expr_magnitude')}")
    return v


def _pow(a: Any, b: Any) -> Any:
    # |a| <= bound and the result must stay <= bound: check with logarithms before computing (the
    # margin leaves the exact edge to _bounded)
    if a not in (0, 1, -1) and b > 0 and b * math.log(abs(a)) > math.log(limits().max_expr_magnitude) + 1e-9:
        raise ValueError(f"{a} ** {b} exceeds {limits().max_expr_magnitude} in magnitude "
                         f"{limit_hint('max_expr_magnitude')}")
    return a ** b


def _round(x: Any, *nd: Any) -> Any:
    if nd and not -30 <= nd[0] <= 30:  # round(x, -10**9) would build a huge power of ten
        raise ValueError(f"round() digits must be within -30..30, got {nd[0]}")
    return round(x, *nd)


_FUNCS = {"int": int, "round": _round, "min": min, "max": max, "float": float}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow}


def _arith(expr: ast.AST, env: dict) -> Any:
    """Evaluate the arithmetic subset; every value read or computed is :func:`_bounded`."""
    return _bounded(_arith_raw(expr, env))


def _arith_raw(expr: ast.AST, env: dict) -> Any:
    if isinstance(expr, ast.Expression):
        return _arith(expr.body, env)
    if isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool):
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in env:
        v = env[expr.id]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"'${expr.id[len('__v_'):]}' is {v!r}, not a number")
        return v
    if isinstance(expr, ast.BinOp) and type(expr.op) in _BINOPS:
        a, b = _arith(expr.left, env), _arith(expr.right, env)
        if isinstance(expr.op, ast.Pow) and abs(b) > 64:
            raise ValueError("exponent too large")
        return _BINOPS[type(expr.op)](a, b)
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        v = _arith(expr.operand, env)
        return -v if isinstance(expr.op, ast.USub) else v
    if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in _FUNCS
            and not expr.keywords and expr.args):
        return _FUNCS[expr.func.id](*[_arith(a, env) for a in expr.args])
    raise ValueError("only numbers, $variables, + - * / // % ** and int() round() min() max() are allowed")


def _parse_expr(expr: str) -> ast.AST:
    """``ast.parse`` of a bounded expression: length and node count (so the recursive evaluation
    stays shallow) are checked before anything is evaluated."""
    bounds = limits()
    if len(expr) > bounds.max_expr_chars:
        raise ValueError(f"the expression is {len(expr)} characters long {limit_hint('max_expr_chars')}")
    tree = ast.parse(expr, mode="eval")
    if sum(1 for _ in ast.walk(tree)) > bounds.max_expr_nodes:
        raise ValueError(f"the expression has more than {bounds.max_expr_nodes} terms {limit_hint('max_expr_nodes')}")
    return tree


def _expand(text: str, variables: dict, path: PathT, locate: Callable[[PathT], dict]) -> Any:
    names = [m.group(1) for m in _VAR.finditer(text) if m.group(1) != "$"]
    for nm in names:
        if nm not in variables:
            cands = ["$" + k for k in variables]
            raise SpecError(f"unknown template variable '${nm}'{did_you_mean('$' + nm, cands)}; "
                            f"known: {', '.join(sorted(cands))}", **locate(path))
    whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", text.strip())
    if whole:
        return copy.deepcopy(variables[whole.group(1)])
    indexed = _INDEXED.fullmatch(text.strip())
    if indexed:
        return _item(indexed, variables, locate(path))
    if names and "$$" not in text:
        rest = _VAR.sub(" ", text)
        if re.fullmatch(r"[\d\s.+\-*/%(),]*", re.sub(r"\b(int|round|min|max|float)\b", " ", rest)):
            expr = _VAR.sub(lambda m: f"__v_{m.group(1)}", text)
            env = {f"__v_{k}": v for k, v in variables.items()}
            shown = text if len(text) <= 80 else text[:76] + "..."
            try:
                return _arith(_parse_expr(expr.strip()), env)
            except (SyntaxError, MemoryError, RecursionError):
                raise SpecError(f"cannot read the expression {shown!r}", **locate(path)) from None
            except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
                raise SpecError(f"cannot evaluate {shown!r}: {e}", **locate(path)) from None
    return _VAR.sub(lambda m: "$" if m.group(1) == "$" else str(variables[m.group(1)]), text)


def _item(m: re.Match, variables: dict, at: dict) -> Any:
    """``$name[i][j]...``: the item of the list variable ``name`` (each index an arithmetic expression)."""
    value, shown = variables[m.group(1)], "$" + m.group(1)
    env = {f"__v_{k}": v for k, v in variables.items()}
    for sub in re.findall(r"\[([^\[\]]+)\]", m.group(2)):
        try:
            i = _arith(_parse_expr(_VAR.sub(lambda v: f"__v_{v.group(1)}", sub).strip()), env)
        except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            raise SpecError(f"cannot evaluate the index [{sub}] of {shown}: {e}", **at) from None
        if not isinstance(value, list):
            raise SpecError(f"{shown} is {_kind(value)}, not a list: it cannot be indexed with [{sub}]", **at)
        if not isinstance(i, int) or not -len(value) <= i < len(value):
            raise SpecError(f"index [{sub}] = {i!r} is out of range for {shown} (a list of {len(value)})", **at)
        value, shown = value[i], f"{shown}[{sub}]"
    return copy.deepcopy(value)


def substitute(node: Any, variables: dict, locate: Callable[[PathT], dict], path: PathT = ()) -> Any:
    """Return a copy of ``node`` with ``$var`` strings replaced by ``variables``' values.

    ``locate(path)`` returns SpecError location kwargs for a path relative to ``node``; an unknown
    variable raises ``SpecError("unknown template variable '$hedas' (did you mean '$heads'?)")``
    located there. Mapping keys are not substituted, values and list items are.
    """
    if isinstance(node, dict):
        return {k: substitute(v, variables, locate, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, variables, locate, path + (i,)) for i, v in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        return _expand(node, variables, path, locate)
    return copy.deepcopy(node)
