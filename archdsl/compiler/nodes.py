"""Template body -> program: compiles the nodes of one block template (combinators from the
language, primitives from the registry) into a :class:`Scope`, inferring widths as it goes."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from torch import nn

from archdsl import registry
from archdsl.compiler.context import CONFIG_ERRORS, BuildContext, PathT, _Origin
from archdsl.compiler.graph import Scope, _Branch, _Leaf, _Node, _Residual, _Seq
from archdsl.errors import SpecError, did_you_mean
from archdsl.language.templates import COMBINATORS, MERGES  # the node grammar is the language's

__all__ = ["NodeBuilder", "record_origins"]


# ==================================================================================================
# templates (loading, params and substitution are the language's: archdsl.language.templates)


def record_origins(node: Any, path: PathT, var_origins: Dict[str, _Origin], out: Dict[PathT, _Origin]) -> None:
    """Note the node paths whose value is exactly ``$var`` for a variable that came from a spec
    field, so errors about the substituted value point at that field (e.g. the spec's ``mixer:``)."""
    if isinstance(node, str):
        var = node.strip()[1:] if node.strip().startswith("$") else None
        if var in var_origins:
            out[path] = var_origins[var]
    elif isinstance(node, list):
        for i, v in enumerate(node):
            record_origins(v, path + (i,), var_origins, out)
    elif isinstance(node, dict):
        for k, v in node.items():
            record_origins(v, path + (k,), var_origins, out)


# ==================================================================================================
# node compilation


class NodeBuilder:
    """Compiles one template body into a Scope (leaf modules registered by key)."""

    def __init__(self) -> None:
        self._widths: Dict[Tuple[int, str], Tuple[int, int, bool]] = {}  # (scope, key) -> (in, out, keeps grid)

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
        if key == "reuse":
            return self._reuse(node[key], name, ctx, scope)
        if key in COMBINATORS:
            sub = ctx.child(key)
            if name is not None:  # a named combinator opens its own module level
                inner = Scope()
                prog, d, keeps = self._combinator(key, node[key], sub, inner, [])
                inner.program, inner.returns_hw = prog, not keeps
                self._register(scope, name, inner, ctx)
                self._widths[id(scope), name] = (ctx.dim_in, d, keeps)
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
        self._widths[id(scope), key_name] = (ctx.dim_in, int(d_out), keeps)
        return _Leaf(key_name, module), int(d_out), keeps

    def _reuse(self, target: Any, name: Any, ctx: BuildContext, scope: Scope) -> Tuple[_Node, int, bool]:
        """``{reuse: NAME}``: the module named NAME earlier at this level, run again (same parameters)."""
        if name is not None:
            raise ctx.error("a 'reuse' node takes no 'name': it runs the module named by 'reuse'", ("name",))
        if not isinstance(target, str) or (id(scope), target) not in self._widths:
            known = sorted(k for s, k in self._widths if s == id(scope))
            raise ctx.error(f"reuse: no module named {target!r} before this node at this level of the block"
                            f"{did_you_mean(str(target), known)}; named so far: {', '.join(known) or '(none)'}",
                            ("reuse",))
        d_in, d_out, keeps = self._widths[id(scope), target]
        if d_in != ctx.dim_in:
            raise ctx.error(f"reuse: module '{target}' reads width {d_in}, but its input here has width {ctx.dim_in}",
                            ("reuse",))
        return _Leaf(target, scope._modules[target]), d_out, keeps

    @staticmethod
    def _register(scope: Scope, key: str, module: nn.Module, ctx: BuildContext) -> None:
        if key in scope._modules:
            raise ctx.error(f"duplicate module name '{key}' in this block (names must be unique per level)")
        if hasattr(scope, key) or hasattr(nn.Module, key):
            raise ctx.error(f"module name '{key}' is reserved; choose another 'name'")
        scope.add_module(key, module)
