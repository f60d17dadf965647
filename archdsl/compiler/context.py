"""What a template-node builder sees (:class:`BuildContext`) and how options are checked against a
constructor's signature (:func:`check_options`). Errors are :class:`SpecError` located in the spec
or the template file that wrote the node."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from torch import nn

from archdsl import registry
from archdsl.errors import SpecError, did_you_mean

__all__ = ["BuildContext", "check_options", "accepted_names", "CONFIG_ERRORS", "PathT", "Locate"]

PathT = Tuple[Any, ...]
Locate = Callable[[PathT], dict]
# what a constructor raises for a bad configuration (torch raises RuntimeError for e.g. negative sizes)
CONFIG_ERRORS = (ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError)


def _fmt(path: PathT) -> str:
    return ".".join(str(p) for p in path)


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


def accepted_names(target: Any) -> Optional[set]:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # pragma: no cover
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)
