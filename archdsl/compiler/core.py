"""Spec -> ``nn.Module``: registry lookups, template expansion, shape inference, located errors.

Public API::

    compile_spec(spec) -> ArchModel                       # a validated ModelSpec (archdsl.language)
    build_model(spec_or_path, overrides=(), *, device=None, image_size=None,
                features_only=None, out_indices=None) -> ArchModel

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
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import torch
from torch import nn

import archdsl.compiler.primitives  # noqa: F401  (registers the template primitives)
import archdsl.layers  # noqa: F401  (registers the built-in components)
from archdsl import language as spec_mod
from archdsl import registry
from archdsl.compiler.context import BuildContext, Locate, PathT, _Origin, accepted_names
from archdsl.compiler.graph import TemplateBlock
from archdsl.compiler.nodes import NodeBuilder, record_origins
from archdsl.errors import SpecError, did_you_mean
from archdsl.language.schema import StagePlan, ref_parts
from archdsl.language.templates import block_kind, load_template
from archdsl.layouts import LAYOUTS

__all__ = ["compile_spec", "build_model", "Compiler", "init_weights"]


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
        name, opts = ref_parts(ref)
        ctx = BuildContext(dim_in=0, variables={}, drop_path=0.0, path=tuple(path),
                           locate=lambda p: self.spec.locate(p))
        try:
            target = registry.get(kind, name)
        except SpecError as e:
            raise ctx.error(e.message, ("type",) if isinstance(ref, dict) else ()) from None
        if defaults:
            accepted = accepted_names(target)
            for k, v in defaults.items():
                if k not in opts and (accepted is None or k in accepted):
                    opts[k] = v
        return ctx.construct_cls(f"{kind} '{name}'", target, args, opts, name=name)

    # ---------------------------------------------------------------- blocks
    def block(self, plan: StagePlan, index: int, *, drop_path: float,
              grid: Optional[Sequence[int]] = None) -> nn.Module:
        """Block ``index`` of the stage ``plan`` describes: a template instance or a Python block.
        ``grid``: the stage's token grid ``[H, W]`` at the spec's ``image_size`` (template variable
        ``$grid``)."""
        name, opts = ref_parts(plan.block)
        where = f"in stage {plan.index} block {index}, dim {plan.dim}"
        mixer_ref = copy.deepcopy(plan.mixer)
        if isinstance(mixer_ref, str):
            mixer_ref = {"type": mixer_ref}
        if block_kind(plan.block, self.spec) == "python":
            ctx = BuildContext(dim_in=plan.dim, variables={}, drop_path=drop_path, path=tuple(plan.block_path),
                               locate=lambda p: self.spec.locate(p), where=where)
            return ctx.construct_cls(f"block '{name}'", registry.get("block", name),
                                     (plan.dim, plan.heads, mixer_ref, drop_path), opts, name=name)
        builtins = {"dim": plan.dim, "heads": plan.heads, "mixer": mixer_ref, "drop_path": drop_path,
                    "drop_rate": float(getattr(self.spec, "drop_rate", 0.0) or 0.0), "stage": plan.index,
                    "index": index, "grid": list(grid) if grid is not None else None}
        return self._template_block(plan, opts, builtins, where)

    def _template_block(self, plan: StagePlan, opts: Dict[str, Any], builtins: Dict[str, Any],
                        where: str) -> TemplateBlock:
        """Instantiate the block template with its variables and compile its body; errors about a
        substituted ``$var`` point at the spec field the value came from."""
        ref_path = tuple(plan.block_path)
        template = load_template(plan.block, self.spec, at=ref_path)
        variables = template.variables(opts, builtins=builtins, at=lambda sub: self.spec.locate(ref_path + tuple(sub)))
        spec_loc: Locate = lambda p: self.spec.locate(p)
        var_origins = {"mixer": _Origin(spec_loc, tuple(plan.mixer_path)), "dim": _Origin(spec_loc, plan.dim_path),
                       "heads": _Origin(spec_loc, plan.heads_path)}
        var_origins.update({k: _Origin(spec_loc, ref_path + (k,)) for k in opts})
        origins: Dict[PathT, _Origin] = {}
        record_origins(template.body, ("body",), var_origins, origins)
        ctx = BuildContext(dim_in=plan.dim, variables=variables, drop_path=builtins["drop_path"], path=("body",),
                           locate=template.locate, where=where, origins=origins)
        blk = TemplateBlock(template.name, plan.dim)
        prog, d_out, keeps = NodeBuilder().build(template.instantiate(variables), ctx, blk, [])
        if d_out != plan.dim:
            raise ctx.error(f"block '{template.name}' must keep the width: body changes {plan.dim} -> {d_out}")
        if not keeps:
            raise ctx.error(f"block '{template.name}' must keep the token grid (it has a strided conv)")
        blk.program = prog
        return blk


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


def configure_features(model: nn.Module, spec: Any, features_only: Optional[bool] = None,
                       out_indices: Any = None) -> None:
    """Apply the spec's ``features:`` section and the ``features_only`` / ``out_indices`` arguments
    (arguments win; ``features_only=None``: a backbone when the spec has ``features:``)."""
    section = getattr(spec, "features", None)
    if features_only is None:
        features_only = section is not None
    if not features_only and section is None:
        if out_indices is not None:
            raise SpecError("out_indices needs features_only=True (or a features: section in the spec)")
        return
    from_spec = out_indices is None and section is not None and section.out_indices is not None
    indices = section.out_indices if from_spec else out_indices
    try:
        model.set_features(indices, norm=bool(section.norm) if section else False, features_only=features_only)
    except ValueError as e:
        if from_spec:
            raise spec.error(("features", "out_indices"), str(e)) from None
        raise SpecError(f"out_indices: {e}") from None


def compile_spec(spec: Any, *, image_size: Optional[int] = None, features_only: Optional[bool] = None,
                 out_indices: Any = None) -> nn.Module:
    """Validated ``ModelSpec`` -> model (``ArchModel``), weights initialised (deterministic under
    ``torch.manual_seed``). ``image_size`` replaces the model's ``default_input_size`` only: the
    architecture (e.g. an APE table sized for the spec's ``image_size``) stays that of the spec, so
    the parameter count does not depend on it. Raises :class:`SpecError` located in the spec or
    template file."""
    if getattr(spec, "plugins", None) and not getattr(spec, "_plugins_imported", False):
        spec_mod.import_plugins(spec)  # a ModelSpec made without load_spec: the same opt-in applies
    layout = getattr(spec, "layout", "hierarchical")
    if layout not in LAYOUTS:
        raise SpecError(f"unknown layout '{layout}'{did_you_mean(layout, LAYOUTS)}", **spec.locate(("layout",)))
    model = LAYOUTS[layout](spec, Compiler(spec))
    configure_features(model, spec, features_only, out_indices)
    init_weights(model)
    if image_size is not None:
        model.default_input_size = (model.default_input_size[0], int(image_size), int(image_size))
    return model


def build_model(spec_or_path: Any, overrides: Iterable[str] = (), *, device: Any = None,
                image_size: Optional[int] = None, features_only: Optional[bool] = None,
                out_indices: Any = None, allow_plugins: Optional[bool] = None) -> nn.Module:
    """Load (if a path or a dict), validate and compile a spec.

    ``device="meta"`` allocates no weights (validation only); other devices build on the CPU and
    move the model, so weights do not depend on the device. ``image_size`` sets
    ``model.default_input_size`` (the size reports use); the model accepts any size anyway.

    ``features_only=True`` gives a backbone (timm's convention): no head, ``forward`` returns one
    ``[B, C_i, H_i, W_i]`` map per ``out_indices`` entry (stage indices; block indices when
    isotropic; default all stages), described by ``model.feature_info``. A spec with a
    ``features: {out_indices, norm}`` section builds a backbone unless ``features_only=False``.
    ``allow_plugins`` lets a spec's ``plugins:`` be imported (default: ``ARCHDSL_ALLOW_PLUGINS``)."""
    overrides = list(overrides or ())
    if isinstance(spec_or_path, (str, Path)):
        spec = spec_mod.load_spec(str(spec_or_path), overrides, allow_plugins=allow_plugins)
    elif isinstance(spec_or_path, dict):
        spec = spec_mod.load_spec_dict(spec_or_path, overrides=overrides, allow_plugins=allow_plugins)
    else:
        spec = spec_or_path
        if overrides:
            raise SpecError("overrides need a spec file path or a dict (a loaded spec is already resolved)")
    if device is not None and str(device) == "meta":
        with torch.device("meta"):
            return compile_spec(spec, image_size=image_size, features_only=features_only, out_indices=out_indices)
    model = compile_spec(spec, image_size=image_size, features_only=features_only, out_indices=out_indices)
    return model.to(device) if device is not None else model
