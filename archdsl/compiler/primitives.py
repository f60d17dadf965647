"""The template primitives: registered as kind ``"primitive"``, ``fn(arg, ctx) -> (module, dim_out)``.

``arg`` is the node's value after template substitution (``None`` for a bare string node), ``ctx`` is
the compiler's :class:`archdsl.compiler.context.BuildContext`: ``ctx.dim_in``, ``ctx.variables``,
``ctx.drop_path``, ``ctx.options(arg, defaults, what)``, ``ctx.error(msg, sub=())``,
``ctx.construct(kind, name, args, options, name_at=())`` (a registered component) and
``ctx.construct_cls(what, cls, args, options)`` (a class given directly). Builders raise located
:class:`SpecError` through ``ctx.error``; the modules they build are in :mod:`archdsl.layers`.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple

from torch import nn

from archdsl import registry
from archdsl.errors import SpecError, did_you_mean
from archdsl.language.schema import ref_parts
from archdsl.layers.gates import Gate
from archdsl.layers.padding import conv_padding
from archdsl.layers.primitives import (
    NORMS,
    Activation,
    ChannelSlice,
    Dropout,
    DropPath,
    Flip,
    LayerScale,
    Mlp,
    Scale,
    SequenceConv1d,
    TokenConv2d,
    TokenLinear,
    make_norm,
)
from archdsl.layers.squeeze_excite import SqueezeExcite
from archdsl.registry import register

# --------------------------------------------------------------------------------------------------
# primitives (template node builders)


def _at(arg: Any):
    """Where an option sits relative to the node's argument: ``(key,)`` in a mapping, else ``()``."""
    return (lambda key: (key,)) if isinstance(arg, dict) else (lambda key: ())


def _int(v: Any, what: str, ctx: Any, sub: tuple = ()) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ctx.error(f"{what} must be a positive integer, got {v!r}", sub)
    return v


def _bool(v: Any, what: str, ctx: Any, sub: tuple = ()) -> bool:
    if not isinstance(v, bool):
        raise ctx.error(f"{what} must be true or false, got {v!r}", sub)
    return v


def _num(v: Any, what: str, ctx: Any, sub: tuple = (), *, lo: float = 0.0, hi: float | None = None,
         lo_open: bool = False) -> float:
    """A number in [lo, hi) (or (lo, hi) with ``lo_open``)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v > lo if lo_open else v >= lo) \
        and (hi is None or v < hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'})"
        raise ctx.error(f"{what} must be a number in {rng}, got {v!r}", sub)
    return float(v)


@register("primitive", "linear")
def linear(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{linear: N}`` or ``{linear: {out: N, bias: true}}``; ``out`` defaults to the input width."""
    at = _at(arg)
    if arg is None or isinstance(arg, (int, str)) and not isinstance(arg, bool):
        opts = {"out": arg, "bias": True}
    else:
        opts = ctx.options(arg, {"out": None, "bias": True}, "linear")
    out = ctx.dim_in if opts["out"] is None else _int(opts["out"], "linear out", ctx, at("out"))
    return TokenLinear(ctx.dim_in, out, bias=_bool(opts["bias"], "linear bias", ctx, at("bias"))), out


def _padding(k: int, stride: int, padding: Any, what: str, ctx: Any, at: Any) -> int:
    """:func:`archdsl.layers.padding.conv_padding` with a located error (at ``padding`` when it
    was written, else at the node)."""
    try:
        return conv_padding(k, stride, padding, what)
    except ValueError as e:
        raise ctx.error(str(e), at("padding") if padding is not None else ()) from None


@register("primitive", "conv")
def conv(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{conv: {out, kernel: 3, stride: 1, groups: 1, bias: true, padding}}`` on the grid; the
    default padding keeps ``H / stride`` and reads every pixel (a kernel/stride pair with no such
    padding is an error unless ``padding`` is written)."""
    at = _at(arg)
    if arg is None or isinstance(arg, int) and not isinstance(arg, bool):
        arg = {"out": arg}
    opts = ctx.options(arg, {"out": None, "kernel": 3, "stride": 1, "groups": 1, "bias": True,
                             "padding": None}, "conv")
    out = ctx.dim_in if opts["out"] is None else _int(opts["out"], "conv out", ctx, at("out"))
    k = _int(opts["kernel"], "conv kernel", ctx, at("kernel"))
    groups = _int(opts["groups"], "conv groups", ctx, at("groups"))
    if ctx.dim_in % groups or out % groups:
        raise ctx.error(f"conv groups {groups} must divide both widths {ctx.dim_in} -> {out}")
    stride = _int(opts["stride"], "conv stride", ctx, at("stride"))
    pad = _padding(k, stride, opts["padding"], "conv", ctx, at)
    return TokenConv2d(ctx.dim_in, out, k, stride=stride, padding=pad, groups=groups,
                       bias=_bool(opts["bias"], "conv bias", ctx, at("bias"))), out


@register("primitive", "dwconv")
def dwconv(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{dwconv: {kernel: 3, bias: true, stride: 1, padding}}`` (or ``{dwconv: 5}``): depthwise
    conv, width kept; padding as ``conv``."""
    at = _at(arg)
    if arg is None or isinstance(arg, int) and not isinstance(arg, bool):
        arg = {} if arg is None else {"kernel": arg}
    opts = ctx.options(arg, {"kernel": 3, "bias": True, "stride": 1, "padding": None}, "dwconv")
    k = _int(opts["kernel"], "dwconv kernel", ctx, at("kernel"))
    d = ctx.dim_in
    stride = _int(opts["stride"], "dwconv stride", ctx, at("stride"))
    pad = _padding(k, stride, opts["padding"], "dwconv", ctx, at)
    return TokenConv2d(d, d, k, stride=stride, padding=pad, groups=d,
                       bias=_bool(opts["bias"], "dwconv bias", ctx, at("bias"))), d


@register("primitive", "norm")
def norm(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``norm`` (layernorm), ``{norm: layernorm|batchnorm|rmsnorm|groupnorm}`` or
    ``{norm: {type, eps, groups}}`` (``groups``: groupnorm only, default 1). Every norm acts on the
    channels of each token, so ``layernorm`` is also the channels-first LayerNorm2d of conv nets."""
    at = _at(arg)
    if arg is None or isinstance(arg, str):
        opts = {"type": arg or "layernorm", "eps": None, "groups": None}
    else:
        opts = ctx.options(arg, {"type": "layernorm", "eps": None, "groups": None}, "norm")
    if not isinstance(opts["type"], str) or opts["type"] not in NORMS:
        raise ctx.error(f"unknown norm '{opts['type']}'{did_you_mean(str(opts['type']), NORMS)}; "
                        f"expected one of {', '.join(NORMS)}", at("type"))
    eps = None if opts["eps"] is None else _num(opts["eps"], "norm eps", ctx, at("eps"), lo_open=True)
    groups = 1
    if opts["groups"] is not None:
        if opts["type"] != "groupnorm":
            raise ctx.error(f"norm groups is an option of groupnorm, not of {opts['type']}", at("groups"))
        groups = _int(opts["groups"], "norm groups", ctx, at("groups"))
        if ctx.dim_in % groups:
            raise ctx.error(f"groupnorm groups {groups} must divide the width {ctx.dim_in}", at("groups"))
    return make_norm(opts["type"], ctx.dim_in, eps, groups), ctx.dim_in


@register("primitive", "layer_scale")
def layer_scale(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``layer_scale`` (init 1e-6), ``{layer_scale: 1e-5}`` or ``{layer_scale: {init: 1e-5}}``: a
    learned per-channel scale ``x * gamma`` (CaiT / ConvNeXt; parameter ``gamma: [C]``)."""
    at = _at(arg)
    if arg is None or isinstance(arg, (int, float)) and not isinstance(arg, bool):
        arg = {} if arg is None else {"init": arg}
    opts = ctx.options(arg, {"init": 1e-6}, "layer_scale")
    init = _num(opts["init"], "layer_scale init", ctx, at("init"), lo_open=True)
    return LayerScale(ctx.dim_in, init), ctx.dim_in


@register("primitive", "conv1d")
def conv1d(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{conv1d: 4}`` or ``{conv1d: {kernel: 4, causal: true, bias: true}}``: depthwise conv along the
    token sequence (Mamba / Vim's causal ``conv1d``), width and length kept."""
    at = _at(arg)
    if arg is None or isinstance(arg, int) and not isinstance(arg, bool):
        arg = {} if arg is None else {"kernel": arg}
    opts = ctx.options(arg, {"kernel": 4, "causal": True, "bias": True}, "conv1d")
    k = _int(opts["kernel"], "conv1d kernel", ctx, at("kernel"))
    causal = _bool(opts["causal"], "conv1d causal", ctx, at("causal"))
    if not causal and k % 2 == 0:
        raise ctx.error(f"a non-causal conv1d needs an odd kernel to keep the length, got {k}", at("kernel"))
    return SequenceConv1d(ctx.dim_in, k, causal, _bool(opts["bias"], "conv1d bias", ctx, at("bias"))), ctx.dim_in


@register("primitive", "flip")
def flip(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``flip``: the token sequence reversed (a backward scan is ``[flip, ..., flip]``)."""
    if arg is not None:
        raise ctx.error(f"'flip' takes no options (write it as a bare string), got {arg!r}")
    return Flip(), ctx.dim_in


@register("primitive", "scale")
def scale(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{scale: 0.5}``: multiply by a constant (no parameter)."""
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise ctx.error(f"scale needs a number, e.g. {{scale: 0.5}}, got {arg!r}")
    return Scale(arg), ctx.dim_in


@register("primitive", "slice")
def channel_slice(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{slice: [start, stop]}`` or ``{slice: {start: 0, stop: C}}``: channels ``start:stop`` of the
    input (width ``stop - start``); with a ``concat`` branch it runs a module on part of the
    channels (MambaOut's partial depthwise conv)."""
    if isinstance(arg, list) and len(arg) == 2:
        arg = {"start": arg[0], "stop": arg[1]}
    opts = ctx.options(arg, {"start": 0, "stop": ctx.dim_in}, "slice")
    at = _at(arg)
    start, stop = opts["start"], opts["stop"]
    for key, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ctx.error(f"slice {key} must be an integer, got {v!r}", at(key))
    if not 0 <= start < stop <= ctx.dim_in:
        raise ctx.error(f"slice needs 0 <= start < stop <= {ctx.dim_in} (the input width), got "
                        f"[{start}, {stop}]")
    return ChannelSlice(start, stop), stop - start


def _activation(name: str):
    def build(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
        if arg is not None:
            raise ctx.error(f"'{name}' takes no options (write it as a bare string), got {arg!r}")
        return Activation(name), ctx.dim_in

    build.__name__ = name
    build.__doc__ = f"``{name}``: elementwise activation, width kept."
    return build


for _name in ("relu", "gelu", "silu", "sigmoid", "tanh", "identity"):
    register("primitive", _name)(_activation(_name))


@register("primitive", "mlp")
def mlp(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{mlp: {ratio: 4, hidden: None, out: None, act: gelu, drop: 0, bias: true}}`` (fc1, fc2 like timm)."""
    at = _at(arg)
    if arg is None or isinstance(arg, (int, float)) and not isinstance(arg, bool):
        arg = {} if arg is None else {"ratio": arg}
    opts = ctx.options(arg, {"ratio": 4.0, "hidden": None, "out": None, "act": "gelu", "drop": 0.0,
                             "bias": True}, "mlp")
    d = ctx.dim_in
    hidden = _int(opts["hidden"], "mlp hidden", ctx, at("hidden")) if opts["hidden"] is not None else \
        int(d * _num(opts["ratio"], "mlp ratio", ctx, at("ratio"), lo_open=True))
    if hidden <= 0:
        raise ctx.error(f"mlp hidden width must be positive, got {hidden} (dim {d} x ratio {opts['ratio']})")
    out = d if opts["out"] is None else _int(opts["out"], "mlp out", ctx, at("out"))
    if not isinstance(opts["act"], str) or opts["act"] not in Activation.FUNCS:
        raise ctx.error(f"unknown activation {opts['act']!r}{did_you_mean(str(opts['act']), Activation.FUNCS)}; "
                        f"expected one of {', '.join(Activation.FUNCS)}", at("act"))
    return Mlp(d, hidden, out, act=opts["act"], drop=_num(opts["drop"], "mlp drop", ctx, at("drop"), hi=1.0),
               bias=_bool(opts["bias"], "mlp bias", ctx, at("bias"))), out


@register("primitive", "dropout")
def dropout(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``dropout`` (rate ``$drop_rate``, default 0) or ``{dropout: 0.1}``."""
    p = ctx.variables.get("drop_rate", 0.0) if arg is None else arg
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ctx.error(f"dropout rate must be a number in [0, 1), got {p!r}")
    return Dropout(float(p)), ctx.dim_in


@register("primitive", "drop_path")
def drop_path(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``drop_path`` (this block's scheduled rate ``$drop_path``) or ``{drop_path: 0.1}``."""
    p = ctx.drop_path if arg is None else arg
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ctx.error(f"drop_path rate must be a number in [0, 1), got {p!r}")
    return DropPath(float(p)), ctx.dim_in


def _split_ref(arg: Any, what: str, ctx: Any) -> Tuple[str, Dict[str, Any]]:
    """:func:`archdsl.language.schema.ref_parts` with a located error."""
    try:
        return ref_parts(arg)
    except TypeError:
        raise ctx.error(f"{what} must be a name or a mapping with 'type', got {arg!r}") from None


@register("primitive", "mixer")
def mixer(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{mixer: $mixer}`` or ``{mixer: {type: NAME, heads: H, **options}}``: the registered mixer
    ``cls(dim, heads, **options)``; ``heads`` defaults to ``$heads``. Width kept."""
    if arg is None:
        arg = ctx.variables.get("mixer")
    if arg is None:
        raise ctx.error("this block has a {mixer: ...} node but the spec gives no 'mixer' (add e.g. "
                        "mixer: {type: linear_attention})")
    name, opts = _split_ref(arg, "mixer", ctx)
    heads = opts.pop("heads", ctx.variables.get("heads"))
    at = ("type",) if isinstance(arg, dict) else ()
    if heads is None:  # the spec gives no heads: fine for a mixer whose `heads` has a default
        heads = _default_heads(name, ctx, at)
    return ctx.construct("mixer", name, (ctx.dim_in, heads), opts, name_at=at), ctx.dim_in


def _default_heads(name: str, ctx: Any, at: tuple) -> Any:
    """The default of mixer ``name``'s ``heads`` parameter; a located error when it has none."""
    try:
        target = registry.get("mixer", name)
    except SpecError as e:
        raise ctx.error(e.message, at) from None
    param = inspect.signature(target).parameters.get("heads")
    if param is None or param.default is inspect.Parameter.empty:
        raise ctx.error(f"mixer '{name}' needs heads: give stages.heads (hierarchical), heads (isotropic) "
                        f"or heads in the mixer's options")
    return param.default


@register("primitive", "posenc")
def posenc(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``{posenc: cpe}`` or ``{posenc: {type: ape, **options}}``: the registered ``cls(dim, **options)``."""
    name, opts = _split_ref(arg, "posenc", ctx)
    at = ("type",) if isinstance(arg, dict) else ()
    return ctx.construct("posenc", name, (ctx.dim_in,), opts, name_at=at), ctx.dim_in


@register("primitive", "gate")
def gate(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``gate`` or ``{gate: {act: sigmoid, proj: true, bias: true}}`` -> ``archdsl.layers.gates.Gate``."""
    if isinstance(arg, str):
        arg = {"act": arg}
    opts = ctx.options(arg or {}, {"act": "sigmoid", "proj": True, "bias": True}, "gate")
    return ctx.construct_cls("gate", Gate, (ctx.dim_in,), opts), ctx.dim_in


@register("primitive", "squeeze_excite")
def squeeze_excite(arg: Any, ctx: Any) -> Tuple[nn.Module, int]:
    """``squeeze_excite`` or ``{squeeze_excite: {ratio: 0.25, channels, act: relu, norm}}``: channel
    attention ``x * sigmoid(expand(act(reduce(mean over tokens of norm(x)))))`` with ``channels`` (or
    ``max(1, int(C * ratio))``) in the middle; ``norm`` (e.g. layernorm) normalises the tokens before
    the mean (EfficientVMamba's BiAttn: ``{ratio: 0.125, act: gelu, norm: layernorm}``). Keys ``norm``,
    ``reduce``, ``expand``; :class:`archdsl.layers.squeeze_excite.SqueezeExcite`."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        arg = {"ratio": arg}
    opts = ctx.options(arg or {}, {"ratio": 0.25, "channels": None, "act": "relu", "norm": None}, "squeeze_excite")
    at = _at(arg)
    if opts["act"] not in Activation.FUNCS:
        raise ctx.error(f"unknown activation {opts['act']!r}{did_you_mean(str(opts['act']), Activation.FUNCS)}; "
                        f"expected one of {', '.join(Activation.FUNCS)}", at("act"))
    if opts["norm"] is not None and opts["norm"] not in NORMS:
        raise ctx.error(f"unknown norm {opts['norm']!r}{did_you_mean(str(opts['norm']), NORMS)}; "
                        f"expected one of {', '.join(NORMS)} (or null)", at("norm"))
    return ctx.construct_cls("squeeze_excite", SqueezeExcite, (ctx.dim_in,), opts), ctx.dim_in
