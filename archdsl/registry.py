"""Name -> component registry (the timm habit): users add a component with a decorator.

Kinds and the constructor signature each kind must accept (see docs/architecture.md):

=============  ===========================================  ==========================================
kind           constructor                                   forward
=============  ===========================================  ==========================================
mixer          ``cls(dim, heads, **options)``                ``(x[B,N,C], hw) -> [B,N,C]``
block          ``cls(dim, heads, mixer, drop_path, **opt)``  ``(x[B,N,C], hw) -> [B,N,C]``
stem           ``cls(in_chans, dim, **options)``             ``img[B,3,H,W] -> (x[B,N,C], (h, w))``
downsample     ``cls(dim_in, dim_out, **options)``           ``(x, hw) -> (x', hw')``
head           ``cls(dim, num_classes, **options)``          ``(x, hw) -> logits[B,K]``
primitive      ``fn(arg, ctx) -> (module, dim_out)``         a template node builder (compiler)
posenc         ``cls(dim, **options)``                       ``(x, hw) -> x``
decoder        ``cls(in_channels, num_classes, **options)``  ``[maps[B,C_i,H_i,W_i]] -> [B,K,H_0,W_0]``
=============  ===========================================  ==========================================

A spec names a module with ``plugins: [my_pkg.my_mixers]``; importing it runs its decorators.

The registry is a plain table at the bottom of the package (it imports only :mod:`archdsl.errors`):
it holds what has been imported. ``import archdsl.compiler`` registers every built-in component
(:mod:`archdsl.layers`) and template primitive (:mod:`archdsl.compiler.primitives`).
"""
from __future__ import annotations

import fnmatch
import importlib
from typing import Any, Callable, Dict

from archdsl.errors import SpecError, did_you_mean

KINDS = ("mixer", "block", "stem", "downsample", "head", "primitive", "posenc", "decoder")

_REGISTRY: Dict[str, Dict[str, Any]] = {k: {} for k in KINDS}


def register(kind: str, name: str | None = None, *, override: bool = False) -> Callable[[Any], Any]:
    """Decorator: ``@register("mixer", "linear_attention")``. Duplicate names are an error
    unless ``override=True`` (a plugin replacing a built-in must say so)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {', '.join(KINDS)}")

    def deco(obj: Any) -> Any:
        key = name or getattr(obj, "__name__", None)
        if not key:
            raise ValueError("register() needs a name for objects without __name__")
        if key in _REGISTRY[kind] and _REGISTRY[kind][key] is not obj and not override:
            raise ValueError(f"{kind} {key!r} is already registered (by {_describe(_REGISTRY[kind][key])}); "
                             f"pass override=True to replace it")
        _REGISTRY[kind][key] = obj
        return obj

    return deco


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def get(kind: str, name: str) -> Any:
    """Look a component up; an unknown name raises :class:`SpecError` with a did-you-mean."""
    table = _REGISTRY[kind]
    if name not in table:
        known = sorted(table)
        raise SpecError(f"unknown {kind} '{name}'{did_you_mean(name, known)}; "
                        f"known: {', '.join(known) if known else '(none)'}")
    return table[name]


def has(kind: str, name: str) -> bool:
    return name in _REGISTRY[kind]


def names(kind: str, filter: str | None = None) -> list[str]:
    """Registered names of a kind, sorted; ``filter`` is an fnmatch pattern (like timm.list_models)."""
    out = sorted(_REGISTRY[kind])
    return [n for n in out if fnmatch.fnmatch(n, filter)] if filter else out


def load_plugins(modules: list[str]) -> None:
    """Import user modules named in a spec's ``plugins:`` so their ``@register`` calls run."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise SpecError(f"cannot import plugin module '{mod}': {e}") from e
        except (Exception, SystemExit) as e:  # the plugin's own code failed: still one located line
            first = str(e).splitlines()[0] if str(e) else ""
            raise SpecError(f"plugin module '{mod}' failed while importing: {type(e).__name__}"
                            f"{': ' + first if first else ''}") from e

