"""Spec -> ``nn.Module``: registry lookups, template expansion, shape inference, located errors.

Public API::

    compile_spec(spec) -> ArchModel                       # a validated ModelSpec (archdsl.spec)
    build_model(spec_or_path, overrides=(), *, device=None, image_size=None) -> ArchModel

Widths flow through every template node at compile time (``dim_in -> dim_out``), so a residual
that changes the width, a branch whose paths disagree, an unknown component or a misspelled option
is a :class:`SpecError` pointing at the YAML line that caused it, before any weight is allocated
(``device="meta"`` builds without memory, for validation).

Template nodes are compiled into a *program* (plain Python objects: sequence / residual / branch /
leaf) whose leaf modules are registered flat on the enclosing block under their ``name:`` (or their
position path, e.g. ``1_2`` or ``1_main_0``). Unnamed combinators add no module level, so the MLLA
template gives the official keys ``blocks.0.in_proj.weight``, ``blocks.0.attn.qk.weight``. A named
combinator opens a nested :class:`Scope` under its name.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from archdsl import registry
from archdsl.spec.errors import SpecError, did_you_mean
from archdsl.spec.templates import COMBINATORS, MERGES  # the node grammar is the language's

__all__ = ["compile_spec", "build_model", "BuildContext", "Scope", "TemplateBlock", "init_weights",
           "check_options"]

PathT = Tuple[Any, ...]
Locate = Callable[[PathT], dict]
# what a constructor raises for a bad configuration (torch raises RuntimeError for e.g. negative sizes)
CONFIG_ERRORS = (ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError)


def _fmt(path: PathT) -> str:
    return ".".join(str(p) for p in path)


# ==================================================================================================
# program nodes (plain objects; their leaf modules are registered on the enclosing Scope)


class _Node:
    def run(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Tuple[int, int]]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _Leaf(_Node):
    def __init__(self, key: str, module: nn.Module):
        self.key, self.module = key, module
        self.returns_hw = bool(getattr(module, "returns_hw", False))

    def run(self, x, hw):
        if self.returns_hw:
            return self.module(x, hw)
        return self.module(x, hw), hw

    def describe(self) -> str:
        return self.key


class _Seq(_Node):
    def __init__(self, items: List[_Node]):
        self.items = items

    def run(self, x, hw):
        for it in self.items:
            x, hw = it.run(x, hw)
        return x, hw

    def describe(self) -> str:
        return "[" + ", ".join(i.describe() for i in self.items) + "]"


class _Residual(_Node):
    def __init__(self, body: _Node):
        self.body = body

    def run(self, x, hw):
        y, _ = self.body.run(x, hw)
        return x + y, hw

    def describe(self) -> str:
        return f"residual{self.body.describe()}" if isinstance(self.body, _Seq) else \
            f"residual[{self.body.describe()}]"


class _Branch(_Node):
    def __init__(self, paths: Dict[str, _Node], merge: str):
        self.paths, self.merge = paths, merge

    def run(self, x, hw):
        outs = [p.run(x, hw)[0] for p in self.paths.values()]
        if self.merge == "concat":
            return torch.cat(outs, dim=-1), hw
        y = outs[0]
        for o in outs[1:]:
            y = y * o if self.merge == "mul" else y + o
        return y, hw

    def describe(self) -> str:
        inner = "; ".join(f"{k}: {v.describe()}" for k, v in self.paths.items())
        return f"branch<{self.merge}>({inner})"


class Scope(nn.Module):
    """A module level holding leaf modules by key and the program that runs them.

    ``forward(x[B, N, C], hw) -> [B, N, C']`` (``(x, hw')`` when the program changes the grid).
    """

    def __init__(self) -> None:
        super().__init__()
        self.program: _Node = _Seq([])
        self.returns_hw = False

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]):
        y, hw2 = self.program.run(x, tuple(hw))
        return (y, hw2) if self.returns_hw else y

    def extra_repr(self) -> str:
        return f"program={self.program.describe()}"


class TemplateBlock(Scope):
    """A block compiled from a template: ``forward(x[B, N, C], hw) -> [B, N, C]``."""

    def __init__(self, template: str, dim: int):
        super().__init__()
        self.template, self.dim = template, dim

    def extra_repr(self) -> str:
        return f"template={self.template}, dim={self.dim}, program={self.program.describe()}"


# ==================================================================================================
# option checking and component construction


def check_options(target: Any, options: Dict[str, Any], n_positional: int, what: str,
                  error: Callable[[str, Any], SpecError]) -> None:
    """Check ``options`` against ``target``'s signature, skipping its first ``n_positional``
    parameters; ``error(message, bad_key)`` makes the SpecError (did-you-mean included)."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return
    params = list(sig.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_positional]
    allowed = [p.name for p in params if p not in pos and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in allowed:
            raise error(f"unknown option '{key}' for {what}{did_you_mean(key, allowed)}; "
                        f"valid options: {', '.join(allowed) if allowed else '(none)'}", key)


@dataclass
class _Origin:
    """Where a value came from in the spec (for errors about it)."""
    locate: Locate
    path: PathT


@dataclass
class BuildContext:
    """What a primitive builder sees: ``fn(arg, ctx) -> (module, dim_out)``.

    ``dim_in``: the width entering the node; ``variables``: the template variables (``dim``,
    ``heads``, ``mixer``, ``drop_path``, ``drop_rate``, ``stage``, ``index``, ``grid`` and the
    template's params); ``drop_path``: this block's stochastic-depth rate; ``path``: the node's key path in its
    template (for errors); ``locate``: path -> SpecError location kwargs.
    """

    dim_in: int
    variables: Dict[str, Any]
    drop_path: float
    path: PathT
    locate: Locate
    where: str = ""                        # e.g. "in stage 2 block 0, dim 256" (added to messages)
    origins: Dict[PathT, _Origin] = field(default_factory=dict)  # node path -> spec field of $var

    # ---------------------------------------------------------------- errors
    def _loc(self, path: PathT) -> Tuple[Locate, PathT]:
        probe = tuple(path)
        while True:
            if probe in self.origins:
                o = self.origins[probe]
                return o.locate, o.path + tuple(path[len(probe):])
            if not probe:
                return self.locate, tuple(path)
            probe = probe[:-1]

    def error(self, message: str, sub: PathT = ()) -> SpecError:
        """A SpecError located at this node (or ``path + sub``)."""
        locate, path = self._loc(self.path + tuple(sub))
        suffix = f" ({self.where})" if self.where else ""
        return SpecError(message + suffix, **locate(path))

    def child(self, *sub: Any, dim_in: Optional[int] = None) -> "BuildContext":
        return replace(self, path=self.path + sub, dim_in=self.dim_in if dim_in is None else dim_in)

    # ---------------------------------------------------------------- helpers for primitives
    def options(self, arg: Any, defaults: Dict[str, Any], what: str) -> Dict[str, Any]:
        """Merge a mapping argument onto ``defaults``; unknown keys get a did-you-mean."""
        if arg is None:
            return dict(defaults)
        if not isinstance(arg, dict):
            raise self.error(f"{what}: expected a mapping of options ({', '.join(defaults)}), got {arg!r}")
        for k in arg:
            if k not in defaults:
                raise self.error(f"unknown option '{k}' for {what}{did_you_mean(str(k), defaults)}; "
                                 f"valid options: {', '.join(defaults)}", (k,))
        return {**defaults, **arg}

    def construct(self, kind: str, name: str, args: Sequence[Any], options: Dict[str, Any],
                  name_at: PathT = ()) -> nn.Module:
        """Build registered ``kind`` ``name`` as ``cls(*args, **options)``: unknown names and
        option keys become located SpecErrors, constructor ValueError/TypeError too. ``name_at``:
        where the name is written relative to this node (``("type",)`` for ``{type: name}``)."""
        try:
            target = registry.get(kind, name)
        except SpecError as e:
            raise self.error(e.message, name_at) from None
        return self.construct_cls(f"{kind} '{name}'", target, args, options, name=name)

    def construct_cls(self, what: str, target: Any, args: Sequence[Any], options: Dict[str, Any],
                      name: Optional[str] = None) -> nn.Module:
        check_options(target, options, len(args), what, lambda msg, key: self.error(msg, (key,)))
        try:
            return target(*args, **options)
        except CONFIG_ERRORS as e:
            if isinstance(e, SpecError):
                raise
            _, path = self._loc(self.path)
            raise self.error(f"error building '{name or what}' at {_fmt(path) or '<top>'}: {e}") from e


# ==================================================================================================
# templates (loading, params and substitution are the language's: archdsl.spec.templates)


def _record_origins(node: Any, path: PathT, var_origins: Dict[str, _Origin], out: Dict[PathT, _Origin]) -> None:
    """Note the node paths whose value is exactly ``$var`` for a variable that came from a spec
    field, so errors about the substituted value point at that field (e.g. the spec's ``mixer:``)."""
    if isinstance(node, str):
        var = node.strip()[1:] if node.strip().startswith("$") else None
        if var in var_origins:
            out[path] = var_origins[var]
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _record_origins(v, path + (i,), var_origins, out)
    elif isinstance(node, dict):
        for k, v in node.items():
            _record_origins(v, path + (k,), var_origins, out)


# ==================================================================================================
# node compilation


class _NodeBuilder:
    """Compiles one template body into a Scope (leaf modules registered by key)."""

    def build(self, node: Any, ctx: BuildContext, scope: Scope, prefix: List[str]) -> Tuple[_Node, int, bool]:
        """-> (program node, dim_out, keeps_grid)."""
        if isinstance(node, list):
            return self._seq(node, ctx, scope, prefix)
        if isinstance(node, str):
            return self._primitive(node, None, None, ctx, ctx, scope, prefix)
        if not isinstance(node, dict):
            raise ctx.error(f"a node must be a list, a primitive name or a one-key mapping, got {node!r}")
        name = node.get("name")
        keys = [k for k in node if k != "name"]
        if len(keys) != 1:
            known = list(COMBINATORS) + registry.names("primitive")
            unknown = [k for k in keys if k not in known]
            hint = f"; unknown key '{unknown[0]}'{did_you_mean(str(unknown[0]), known)}" if unknown else ""
            raise ctx.error(f"a node needs exactly one primitive or combinator key (plus an optional 'name'), "
                            f"got {', '.join(map(repr, keys)) or 'none'}{hint}")
        key = keys[0]
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ctx.error(f"'name' must be a non-empty string without '.', got {name!r}", ("name",))
        if key in COMBINATORS:
            sub = ctx.child(key)
            if name is not None:  # a named combinator opens its own module level
                inner = Scope()
                prog, d, keeps = self._combinator(key, node[key], sub, inner, [])
                inner.program, inner.returns_hw = prog, not keeps
                self._register(scope, name, inner, ctx)
                return _Leaf(name, inner), d, keeps
            return self._combinator(key, node[key], sub, scope, prefix)
        return self._primitive(key, node[key], name, ctx, ctx.child(key), scope, prefix)

    def _combinator(self, key: str, arg: Any, ctx: BuildContext, scope: Scope, prefix: List[str]):
        if key == "seq":
            if not isinstance(arg, list):
                raise ctx.error(f"seq: expected a list of nodes, got {arg!r}")
            return self._seq(arg, ctx, scope, prefix)
        if key == "residual":
            prog, d, keeps = self.build(arg, ctx, scope, prefix)
            if d != ctx.dim_in:
                raise ctx.error(f"residual: body changes width {ctx.dim_in} -> {d}")
            if not keeps:
                raise ctx.error("residual: body changes the token grid (a strided conv)")
            return _Residual(prog), d, True
        # branch
        if not isinstance(arg, dict):
            raise ctx.error(f"branch: expected a mapping {{<path>: node, ..., merge: mul|add|concat}}, got {arg!r}")
        merge = arg.get("merge", "add")
        if merge not in MERGES:
            raise ctx.error(f"branch: unknown merge '{merge}'{did_you_mean(str(merge), MERGES)}; "
                            f"expected one of {', '.join(MERGES)}", ("merge",))
        paths = {k: v for k, v in arg.items() if k != "merge"}
        if not paths:
            raise ctx.error("branch: needs at least one path besides 'merge'")
        progs: Dict[str, _Node] = {}
        widths: Dict[str, int] = {}
        for pname, pnode in paths.items():
            prog, d, keeps = self.build(pnode, ctx.child(pname), scope, prefix + [str(pname)])
            if not keeps:
                raise ctx.error(f"branch: path '{pname}' changes the token grid (a strided conv)", (pname,))
            progs[str(pname)], widths[str(pname)] = prog, d
        if merge == "concat":
            d_out = sum(widths.values())
        else:
            if len(set(widths.values())) > 1:
                got = ", ".join(f"{k}: {v}" for k, v in widths.items())
                raise ctx.error(f"branch: merge '{merge}' needs equal widths, got {got}")
            d_out = next(iter(widths.values()))
        return _Branch(progs, merge), d_out, True

    def _seq(self, items: list, ctx: BuildContext, scope: Scope, prefix: List[str]):
        progs: List[_Node] = []
        d, keeps = ctx.dim_in, True
        for i, child in enumerate(items):
            prog, d, k = self.build(child, ctx.child(i, dim_in=d), scope, prefix + [str(i)])
            progs.append(prog)
            keeps = keeps and k
        return _Seq(progs), d, keeps

    def _primitive(self, key: str, arg: Any, name: Optional[str], ctx: BuildContext, sub: BuildContext,
                   scope: Scope, prefix: List[str]):
        if key in COMBINATORS:
            raise ctx.error(f"'{key}' is a combinator and needs an argument ({{{key}: ...}})")
        if not registry.has("primitive", key):
            known = list(COMBINATORS) + registry.names("primitive")
            raise ctx.error(f"unknown primitive '{key}'{did_you_mean(str(key), known)}; known: {', '.join(known)}")
        fn = registry.get("primitive", key)
        try:
            out = fn(arg, sub)
        except SpecError:
            raise
        except CONFIG_ERRORS as e:
            raise sub.error(f"error building '{key}': {e}") from e
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module)):
            raise TypeError(f"primitive '{key}' must return (module, dim_out), got {out!r}")
        module, d_out = out
        key_name = name if name is not None else ("_".join(prefix) or key)
        self._register(scope, key_name, module, ctx)
        keeps = not getattr(module, "returns_hw", False)
        return _Leaf(key_name, module), int(d_out), keeps

    @staticmethod
    def _register(scope: Scope, key: str, module: nn.Module, ctx: BuildContext) -> None:
        if key in scope._modules:
            raise ctx.error(f"duplicate module name '{key}' in this block (names must be unique per level)")
        if hasattr(scope, key) or hasattr(nn.Module, key):
            raise ctx.error(f"module name '{key}' is reserved; choose another 'name'")
        scope.add_module(key, module)


# ==================================================================================================
# the compiler


class Compiler:
    """Builds the parts of one spec; layouts call :meth:`component` and :meth:`block`."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.image_size = int(getattr(spec, "image_size", 224) or 224)

    # ---------------------------------------------------------------- spec-level components
    def component(self, kind: str, ref: Any, path: PathT, args: Sequence[Any],
                  defaults: Optional[Dict[str, Any]] = None) -> nn.Module:
        """``ref`` = name or ``{type, **options}`` written at ``path``; ``defaults`` are options the
        layout supplies when the constructor accepts them and the spec did not set them."""
        from archdsl.spec.schema import ref_parts

        name, opts = ref_parts(ref)
        ctx = BuildContext(dim_in=0, variables={}, drop_path=0.0, path=tuple(path),
                           locate=lambda p: self.spec.locate(p))
        try:
            target = registry.get(kind, name)
        except SpecError as e:
            raise ctx.error(e.message, ("type",) if isinstance(ref, dict) else ()) from None
        if defaults:
            accepted = _accepted_names(target)
            for k, v in defaults.items():
                if k not in opts and (accepted is None or k in accepted):
                    opts[k] = v
        return ctx.construct_cls(f"{kind} '{name}'", target, args, opts, name=name)

    # ---------------------------------------------------------------- blocks
    def block(self, *, ref: Any, ref_path: PathT, mixer: Any, mixer_path: PathT, dim: int, heads: int,
              drop_path: float, stage: int, index: int, dim_path: PathT, heads_path: PathT,
              grid: Optional[Sequence[int]] = None) -> nn.Module:
        """One block of stage ``stage``: a template instance or a Python block. ``grid``: the stage's
        token grid ``[H, W]`` at the spec's ``image_size`` (template variable ``$grid``)."""
        from archdsl.spec.schema import ref_parts

        name, opts = ref_parts(ref)
        where = f"in stage {stage} block {index}, dim {dim}"
        mixer_ref = copy.deepcopy(mixer)
        if isinstance(mixer_ref, str):
            mixer_ref = {"type": mixer_ref}
        from archdsl.spec.templates import block_kind, load_template

        if block_kind(ref, self.spec) == "python":
            ctx = BuildContext(dim_in=dim, variables={}, drop_path=drop_path, path=tuple(ref_path),
                               locate=lambda p: self.spec.locate(p), where=where)
            target = registry.get("block", name)
            return ctx.construct_cls(f"block '{name}'", target, (dim, heads, mixer_ref, drop_path), opts, name=name)
        template = load_template(ref, self.spec, at=tuple(ref_path))
        builtins = {"dim": dim, "heads": heads, "mixer": mixer_ref, "drop_path": drop_path,
                    "drop_rate": float(getattr(self.spec, "drop_rate", 0.0) or 0.0), "stage": stage,
                    "index": index}
        builtins["grid"] = list(grid) if grid is not None else None
        variables = template.variables(opts, builtins=builtins,
                                       at=lambda sub: self.spec.locate(tuple(ref_path) + tuple(sub)))
        spec_loc: Locate = lambda p: self.spec.locate(p)
        var_origins = {"mixer": _Origin(spec_loc, tuple(mixer_path)), "dim": _Origin(spec_loc, tuple(dim_path)),
                       "heads": _Origin(spec_loc, tuple(heads_path))}
        for k in opts:
            var_origins[k] = _Origin(spec_loc, tuple(ref_path) + (k,))
        origins: Dict[PathT, _Origin] = {}
        _record_origins(template.body, ("body",), var_origins, origins)
        body = template.instantiate(variables)
        ctx = BuildContext(dim_in=dim, variables=variables, drop_path=drop_path, path=("body",),
                           locate=template.locate, where=where, origins=origins)
        blk = TemplateBlock(template.name, dim)
        prog, d_out, keeps = _NodeBuilder().build(body, ctx, blk, [])
        if d_out != dim:
            raise ctx.error(f"block '{template.name}' must keep the width: body changes {dim} -> {d_out}")
        if not keeps:
            raise ctx.error(f"block '{template.name}' must keep the token grid (it has a strided conv)")
        blk.program = prog
        return blk


def _accepted_names(target: Any) -> Optional[set]:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # pragma: no cover
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


# ==================================================================================================
# weight init


def init_weights(model: nn.Module) -> None:
    """MLLA/timm init: Linear weight trunc_normal(std=.02), bias 0; LayerNorm weight 1, bias 0.
    A module with ``archdsl_self_init = True`` keeps its own init (its whole subtree is skipped)."""

    def visit(m: nn.Module) -> None:
        if getattr(m, "archdsl_self_init", False):
            return
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        for c in m.children():
            visit(c)

    visit(model)


# ==================================================================================================
# public entry points


def compile_spec(spec: Any, *, image_size: Optional[int] = None) -> nn.Module:
    """Validated ``ModelSpec`` -> model (``ArchModel``), weights initialised (deterministic under
    ``torch.manual_seed``). ``image_size`` replaces the model's ``default_input_size`` only: the
    architecture (e.g. an APE table sized for the spec's ``image_size``) stays that of the spec, so
    the parameter count does not depend on it. Raises :class:`SpecError` located in the spec or
    template file."""
    registry.load_plugins(list(getattr(spec, "plugins", None) or []))
    from archdsl.layouts import LAYOUTS

    layout = getattr(spec, "layout", "hierarchical")
    if layout not in LAYOUTS:
        raise SpecError(f"unknown layout '{layout}'{did_you_mean(layout, LAYOUTS)}", **spec.locate(("layout",)))
    model = LAYOUTS[layout](spec, Compiler(spec))
    init_weights(model)
    if image_size is not None:
        model.default_input_size = (model.default_input_size[0], int(image_size), int(image_size))
    return model


def build_model(spec_or_path: Any, overrides: Iterable[str] = (), *, device: Any = None,
                image_size: Optional[int] = None) -> nn.Module:
    """Load (if a path or a dict), validate and compile a spec.

    ``device="meta"`` allocates no weights (validation only); other devices build on the CPU and
    move the model, so weights do not depend on the device. ``image_size`` sets
    ``model.default_input_size`` (the size reports use); the model accepts any size anyway."""
    from archdsl import spec as spec_mod

    overrides = list(overrides or ())
    if isinstance(spec_or_path, (str, Path)):
        spec = spec_mod.load_spec(str(spec_or_path), overrides)
    elif isinstance(spec_or_path, dict):
        spec = spec_mod.load_spec_dict(spec_or_path, overrides=overrides)
    else:
        spec = spec_or_path
        if overrides:
            raise SpecError("overrides need a spec file path or a dict (a loaded spec is already resolved)")
    if device is not None and str(device) == "meta":
        with torch.device("meta"):
            return compile_spec(spec, image_size=image_size)
    model = compile_spec(spec, image_size=image_size)
    return model.to(device) if device is not None else model
