"""The pydantic v2 schema of a model spec, and the translation of validation errors into one located
:class:`SpecError`.

Types are checked here (strict: ``"4"`` is not an integer, ``true`` is not a number); component
options stay free-form (the compiler checks them against the registered constructor's signature).
Cross-field rules (list lengths, layout-specific fields, stage indices) are checked by
:func:`check_semantics`, which knows the key paths and so can point at the offending key.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
)
from typing_extensions import Annotated

from archdsl.errors import SpecError, did_you_mean
from archdsl.language.limits import limit_hint, limits
from archdsl.language.yaml_loader import PathT, Positions, format_path, parse_path

__all__ = ["ModelSpec", "StagePlan", "StagesSpec", "StageOverride", "TemplateModel", "ComponentRef", "ref_parts",
           "validation_error_to_spec_error", "check_semantics", "fields_at", "json_schema"]

# ---------------------------------------------------------------- component references
_REF_SCHEMA: dict = {
    "anyOf": [
        {"type": "string", "description": "a registered component or template name"},
        {"type": "object", "properties": {"type": {"type": "string", "description": "component name"}},
         "additionalProperties": True,
         "description": "{type: name, **options}; options are checked against the constructor. "
                        "Without 'type' only in a spec that extends one defining this component "
                        "(the options are merged onto it)"},
    ]
}
_PATCH_SCHEMA: dict = {
    "anyOf": [
        {"type": "string", "description": "a registered component or template name"},
        {"type": "object", "additionalProperties": True,
         "description": "{type: name, **options}, or options only (merged onto the global value)"},
    ]
}


def _describe(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_ref(v: Any, *, need_type: bool = True) -> Any:
    if isinstance(v, str):
        if not v.strip():
            raise ValueError("expected a component name, got an empty string")
        return v
    if isinstance(v, dict):
        if "type" not in v:
            if need_type:
                raise ValueError("a component given as a mapping needs a 'type' key (the component name), "
                                 f"got keys {sorted(map(str, v))}")
        elif not isinstance(v["type"], str) or not v["type"].strip():
            raise ValueError(f"'type' must be a component name (a string), got {_describe(v['type'])}")
        for k in v:
            if not isinstance(k, str):
                raise ValueError(f"option names must be strings, got {_describe(k)}")
        return v
    raise ValueError(f"expected a component name or a mapping {{type: name, ...}}, got {_describe(v)}")


ComponentRef = Annotated[Any, BeforeValidator(_check_ref), WithJsonSchema(_REF_SCHEMA)]
"""A name string, or ``{type: name, **options}``."""

ComponentPatch = Annotated[Any, BeforeValidator(lambda v: _check_ref(v, need_type=False)),
                           WithJsonSchema(_PATCH_SCHEMA)]
"""Like :data:`ComponentRef`, but a mapping without ``type`` is allowed (options merged onto the global ref)."""


def _check_posenc(v: Any) -> Any:
    if isinstance(v, list):
        return [_check_ref(x) for x in v]
    return _check_ref(v)


PosencRef = Annotated[Any, BeforeValidator(_check_posenc),
                      WithJsonSchema({"anyOf": [_REF_SCHEMA, {"type": "array", "items": _REF_SCHEMA}]})]


def ref_parts(ref: Any) -> tuple[str, dict]:
    """``"mlla"`` -> ``("mlla", {})``; ``{type: "mlla", mlp_ratio: 4}`` -> ``("mlla", {"mlp_ratio": 4})``."""
    if isinstance(ref, str):
        return ref, {}
    if isinstance(ref, dict) and isinstance(ref.get("type"), str):
        opts = {k: v for k, v in ref.items() if k != "type"}
        return ref["type"], opts
    raise TypeError(f"not a component reference: {ref!r}")


PosInt = Annotated[int, Field(ge=1)]


# ---------------------------------------------------------------- the models
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class StageOverride(_Strict):
    """Per-stage replacement of the block and/or mixer (hybrids)."""

    block: Optional[ComponentPatch] = Field(
        None, title="Block for this stage",
        description="replaces the spec's block in this stage; a mapping without 'type' only changes options")
    mixer: Optional[ComponentPatch] = Field(
        None, title="Mixer for this stage",
        description="replaces the spec's mixer in this stage; a mapping without 'type' is merged onto it "
                    "(e.g. {window_size: 7})")


class StagesSpec(_Strict):
    """Per-stage sizes of the hierarchical layout (all lists have one value per stage)."""

    dims: Optional[List[PosInt]] = Field(None, title="Widths", description="channel width of each stage")
    embed_dim: Optional[PosInt] = Field(
        None, title="Width of stage 0", description="alternative to dims: doubles at every stage")
    depths: Optional[List[PosInt]] = Field(None, title="Depths",
                                           description="number of blocks in each stage (required)")
    heads: Optional[Union[List[PosInt], PosInt]] = Field(
        None, title="Heads", description="attention heads per stage (one int = the same in every stage)")
    override: Dict[int, StageOverride] = Field(
        default_factory=dict, title="Per-stage overrides",
        description="stage index (0-based) -> {block, mixer} replacing the spec-wide ones",
        json_schema_extra={"propertyNames": {"pattern": "^[0-9]+$"}})


class FeaturesSpec(_Strict):
    """Multi-scale feature outputs: the model becomes a backbone (timm's ``features_only``)."""

    out_indices: Optional[Union[List[int], PosInt]] = Field(
        None, title="Feature indices",
        description="stages (hierarchical) or blocks (isotropic) whose outputs are returned, increasing; "
                    "negative = from the end; one int n = the last n. Default: every stage / four blocks")
    norm: bool = Field(False, title="Per-output LayerNorm",
                             description="a LayerNorm norm{i} on every output (the official MLLA / Swin "
                                         "detection backbones)")


class TemplateModel(_Strict):
    """A block template (same form as archdsl/blocks/*.yaml)."""

    block: Optional[str] = Field(None, description="template name (defaults to the key under blocks:)")
    params: Dict[str, Any] = Field(default_factory=dict,
                                   description="declared parameters: name -> default value, or a type name "
                                               "(int, float, str, bool, list, dict, any) for a required one")
    body: Any = Field(..., description="the node: a list (sequence), a bare primitive name, or "
                                       "{primitive-or-combinator: arg, name: attr}")
    doc: Optional[str] = Field(None, description="free text")


@dataclass(frozen=True)
class StagePlan:
    """What the compiler builds for one stage: ``depth`` blocks of width ``dim`` with ``heads``, the
    effective ``block`` / ``mixer`` refs (after ``stages.override``) and where each was written."""

    index: int
    dim: int
    depth: int
    heads: Optional[int]              # None: the spec gives none (fine unless a component needs them)
    block: Any
    block_path: PathT
    mixer: Any
    mixer_path: PathT
    dim_path: PathT
    heads_path: PathT


class ModelSpec(_Strict):
    """A model spec: layout, sizes and the components each part is built from."""

    name: Optional[str] = Field(None, title="Model name", description="defaults to the file name")
    extends: Optional[Union[str, List[str]]] = Field(
        None, title="Base spec(s)", description="path(s) relative to this file; deep-merged, this file wins")
    plugins: List[str] = Field(default_factory=list, title="Plugin modules",
                               description="Python modules imported before building (they @register components)")
    layout: Literal["hierarchical", "isotropic"] = Field(
        "hierarchical", title="Macro layout", description="hierarchical (stages + downsample) or isotropic (ViT-like)")
    image_size: PosInt = Field(224, title="Image size", description="default input size for reports; "
                                                                     "the model accepts others")
    in_chans: PosInt = Field(3, title="Input channels")
    num_classes: Annotated[int, Field(ge=0)] = Field(1000, title="Classes", description="0 = no classifier")
    stem: Optional[ComponentRef] = Field(None, title="Stem", description="patch embedding (component ref)")
    stages: Optional[StagesSpec] = Field(None, title="Stages", description="hierarchical layout sizes")
    downsample: Optional[ComponentRef] = Field(None, title="Downsample",
                                               description="between stages (component ref)")
    block: Optional[ComponentRef] = Field(None, title="Block",
                                          description="block template or Python block (component ref; required)")
    mixer: Optional[ComponentRef] = Field(None, title="Mixer",
                                          description="token mixer built by every {mixer: $mixer} node")
    head: Optional[ComponentRef] = Field(None, title="Head", description="classifier head (component ref)")
    posenc: Optional[PosencRef] = Field(None, title="Positional encoding",
                                        description="added after the stem, e.g. ape (one ref or a list)")
    drop_path: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, title="Stochastic depth", description="rate of the last block; linear from 0 over all blocks")
    drop_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(0.0, title="Dropout before the head")
    blocks: Dict[str, TemplateModel] = Field(default_factory=dict, title="Inline block templates")
    patch_size: Optional[PosInt] = Field(None, title="Patch size (isotropic)")
    dim: Optional[PosInt] = Field(None, title="Width (isotropic)")
    depth: Optional[PosInt] = Field(None, title="Number of blocks (isotropic)")
    heads: Optional[PosInt] = Field(None, title="Heads (isotropic)",
                                    description="needed only when a component uses $heads (attention)")
    class_token: Optional[Union[bool, Literal["first", "middle"]]] = Field(
        None, title="Class token (isotropic)",
        description="a learned class token inserted after the stem: true / first (ViT, index 0) or middle "
                    "(Vim, index N // 2); APE gets a slot for it; the model moves it first before the head "
                    "(global_pool: token takes it, avg skips it)")
    features: Optional[FeaturesSpec] = Field(
        None, title="Feature outputs",
        description="build a backbone returning multi-scale NCHW maps instead of logits (no head)")
    meta: Optional[Dict[str, Any]] = Field(None, title="Notes",
                                           description="free-form (paper, reported numbers); ignored by the compiler")

    _positions: Positions = PrivateAttr(default_factory=dict)
    _source: str = PrivateAttr("<dict>")
    _raw: dict = PrivateAttr(default_factory=dict)
    _templates: dict = PrivateAttr(default_factory=dict)
    _plugins_imported: bool = PrivateAttr(False)

    # ------------------------------------------------------------ locations
    @property
    def source_file(self) -> str:
        """The file the spec was loaded from (as shown in errors), or ``"<dict>"``."""
        return self._source

    @property
    def positions(self) -> Positions:
        return self._positions

    def locate(self, path: Union[str, PathT] = ()) -> dict:
        """SpecError location kwargs ``{file, line, col, path}`` for a key path (a tuple or
        ``"stages.depths.0"``); falls back to the nearest parent with a known position."""
        return locate_in(self._positions, path, self._source)

    def error(self, path: Union[str, PathT], message: str) -> SpecError:
        """A :class:`SpecError` located at ``path`` (``raise spec.error("mixer", "...")``)."""
        return SpecError(message, **self.locate(path))

    def to_dict(self) -> dict:
        """The resolved spec as plain data (extends merged, overrides applied; a deep copy)."""
        return copy.deepcopy(self._raw)

    # ------------------------------------------------------------ per-stage view for the compiler
    def stage_plan(self) -> "list[StagePlan]":
        """One :class:`StagePlan` per stage (effective block / mixer refs after ``stages.override``,
        and the key paths where each value was written, for errors). The isotropic layout is one stage."""
        if self.layout == "isotropic":
            return [StagePlan(index=0, dim=self.dim, depth=self.depth, heads=self.heads,
                              block=self.block, block_path=("block",), mixer=self.mixer, mixer_path=("mixer",),
                              dim_path=("dim",), heads_path=("heads",))]
        st = self.stages
        assert st is not None and st.dims is not None  # guaranteed by check_semantics
        heads = st.heads if isinstance(st.heads, list) else [st.heads] * len(st.dims)
        written = self._raw.get("stages") or {}       # as written (dims / heads before broadcasting)
        dims_from_embed = st.embed_dim is not None and "dims" not in written
        heads_per_stage = isinstance(written.get("heads"), list)
        out = []
        for i, (d, n, h) in enumerate(zip(st.dims, st.depths, heads)):
            ov = st.override.get(i)
            block, bpath = self.block, ("block",)
            mixer, mpath = self.mixer, ("mixer",)
            if ov is not None and ov.block is not None:
                block, bpath = merge_ref(self.block, ov.block), ("stages", "override", i, "block")
            if ov is not None and ov.mixer is not None:
                mixer, mpath = merge_ref(self.mixer, ov.mixer), ("stages", "override", i, "mixer")
            out.append(StagePlan(index=i, dim=d, depth=n, heads=h, block=block, block_path=bpath,
                                 mixer=mixer, mixer_path=mpath,
                                 dim_path=("stages", "embed_dim") if dims_from_embed else ("stages", "dims", i),
                                 heads_path=("stages", "heads", i) if heads_per_stage else ("stages", "heads")))
        return out


def merge_ref(base: Any, patch: Any) -> Any:
    """Apply a component patch: a name or a mapping with ``type`` replaces ``base``; a mapping
    without ``type`` is merged onto ``base``'s options."""
    if isinstance(patch, str) or (isinstance(patch, dict) and "type" in patch):
        return copy.deepcopy(patch)
    if base is None:
        raise ValueError("options without 'type' need a spec-wide value to apply to")
    name, opts = ref_parts(base)
    return {"type": name, **copy.deepcopy(opts), **copy.deepcopy(patch)}


def locate_in(positions: Positions, path: Union[str, PathT], source: str) -> dict:
    """Location kwargs for ``path`` in a positions table (nearest known parent)."""
    if isinstance(path, str):
        path = parse_path(path) if path else ()
    path = tuple(path)
    shown = format_path(path) or None
    probe = path
    while True:
        for cand in _variants(probe):
            if cand in positions:
                return {**positions[cand].kwargs(), "path": shown}
        if not probe:
            return {"file": source, "line": None, "col": None, "path": shown}
        probe = probe[:-1]


def _variants(path: PathT) -> list[PathT]:
    """The path as given, plus str/int twins of each part (``"3"`` vs ``3``)."""
    out = [path]
    alt = tuple(str(p) if isinstance(p, int) and not isinstance(p, bool) else
                (int(p) if isinstance(p, str) and p.lstrip("-").isdigit() else p) for p in path)
    if alt != path:
        out.append(alt)
    return out


# ---------------------------------------------------------------- schema navigation
def fields_at(path: PathT) -> Optional[list[str]]:
    """Known key names of the mapping at ``path`` (a key path of the spec), or ``None`` when that
    mapping is free-form (component options, ``meta``, template bodies)."""
    p = tuple(path)
    if p == ():
        return list(ModelSpec.model_fields)
    if p == ("stages",):
        return list(StagesSpec.model_fields)
    if len(p) == 3 and p[:2] == ("stages", "override"):
        return list(StageOverride.model_fields)
    if len(p) == 2 and p[0] == "blocks":
        return list(TemplateModel.model_fields)
    return None


# ---------------------------------------------------------------- pydantic errors -> SpecError
_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def _real_path(loc: tuple, data: Any) -> PathT:
    """Keep the parts of a pydantic ``loc`` that are keys/indices of the data; drop union member
    tags (``'list[constrained-int]'``). A last part that is not in the data (a missing key) is kept."""
    out: list[Any] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            key = part
            if key not in cur and isinstance(part, str) and part.lstrip("-").isdigit() and int(part) in cur:
                key = int(part)
            if key in cur:
                out.append(key)
                cur = cur[key]
            elif i == len(loc) - 1:
                out.append(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
    return tuple(out)


def _message(err: dict, path: PathT) -> str:
    typ = err["type"]
    inp = err.get("input")
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = path[-1] if path else "?"
        known = fields_at(path[:-1]) or []
        return f"unknown key '{key}'{did_you_mean(str(key), known)}"
    if typ == "missing":
        return f"missing required key '{path[-1] if path else '?'}'"
    if typ in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[typ]}, got {_describe(inp)}"
    if typ == "literal_error":
        expected = ctx.get("expected", "")
        opts = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",") if o.strip()]
        return f"expected one of {', '.join(repr(o) for o in opts)}, got {_describe(inp)}{did_you_mean(str(inp), opts)}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
    if typ in bounds:
        bound = next(iter(ctx.values()), "?")
        return f"must be {bounds[typ]} {bound}, got {_describe(inp)}"
    if typ == "value_error":
        msg = str(ctx.get("error", err.get("msg", "")))
        return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
    return f"{err.get('msg', 'invalid value')}, got {_describe(inp)}"


def validation_error_to_spec_error(exc: ValidationError, data: Any, locate: Callable[[PathT], dict]) -> SpecError:
    """Turn a pydantic error into ONE located :class:`SpecError` (the deepest, most specific problem)."""
    errors = exc.errors()
    scored = []
    for i, e in enumerate(errors):
        loc = tuple(e["loc"])
        if "[key]" in loc:  # a mapping key of the wrong type: report it at the mapping
            cut = loc.index("[key]")
            path = _real_path(loc[:cut - 1], data)
            kw = locate(path + (loc[cut - 1],))
            kw["path"] = format_path(path) or None
            want = {"int_type": "integers (stage indices)", "int_parsing": "integers (stage indices)",
                    "string_type": "strings (names)"}.get(e["type"], "valid keys")
            return SpecError(f"keys of '{format_path(path)}' must be {want}, got {_describe(loc[cut - 1])}", **kw)
        path = _real_path(loc, data)
        # a misspelled key also makes a "missing" one: report the unknown key first; then prefer
        # errors that reach deeper into the user's data; then pydantic's order
        scored.append((e["type"] != "extra_forbidden", -len(path), i, path, e))
    scored.sort(key=lambda t: t[:3])
    path, err = scored[0][3], scored[0][4]
    kw = locate(path)
    kw["path"] = format_path(path) or None
    return SpecError(_message(err, path), **kw)


# ---------------------------------------------------------------- cross-field rules
_ISO_ONLY = ("patch_size", "dim", "depth", "heads", "class_token")
_HIER_ONLY = ("stages", "downsample")


def _check_hierarchical(spec: ModelSpec, raw: dict) -> None:
    """The hierarchical layout's fields: ``stages`` with one value per stage, overrides in range."""
    for f in _ISO_ONLY:
        if f in raw and raw[f] is not None:
            raise spec.error((f,), f"'{f}' belongs to the isotropic layout (this spec has layout: hierarchical; "
                                   f"use stages.* for per-stage sizes)")
    if spec.stages is None:
        raise spec.error(("layout",) if "layout" in raw else (), "missing key 'stages' "
                         "(required by layout: hierarchical)")
    st = spec.stages
    if st.depths is None:
        raise spec.error(("stages", "depths"), "missing required key 'depths'")
    n = len(st.depths)
    if n == 0:
        raise spec.error(("stages", "depths"), "expected at least one stage, got an empty list")
    _bound(spec, ("stages", "depths"), "max_stages", n, "the number of stages")
    if st.dims is not None and st.embed_dim is not None:
        raise spec.error(("stages", "embed_dim"), "give either stages.dims or stages.embed_dim, not both")
    if st.dims is None and st.embed_dim is None:
        raise spec.error(("stages",), "missing key 'dims' (or 'embed_dim')")
    if st.dims is not None and len(st.dims) != n:
        raise spec.error(("stages", "dims"), f"expected {n} values (one per stage, as stages.depths), "
                                             f"got {len(st.dims)}")
    if isinstance(st.heads, list) and len(st.heads) != n:
        raise spec.error(("stages", "heads"), f"expected {n} values (one per stage), got {len(st.heads)}")
    for idx, ov in st.override.items():
        if not 0 <= idx < n:
            raise spec.error(("stages", "override", idx),
                             f"stage index {idx} out of range (this spec has {n} stages: 0..{n - 1})")
        if ov.block is None and ov.mixer is None:
            raise spec.error(("stages", "override", idx), "an override needs 'block' and/or 'mixer'")
        for key, base in (("block", spec.block), ("mixer", spec.mixer)):
            patch = getattr(ov, key)
            if isinstance(patch, dict) and "type" not in patch and base is None:
                raise spec.error(("stages", "override", idx, key),
                                 f"options without 'type' need a spec-wide '{key}' to apply to")
    if st.dims is None:
        st.dims = [st.embed_dim * 2 ** i for i in range(n)]  # type: ignore[operator]
    if isinstance(st.heads, int):
        st.heads = [st.heads] * n


def check_semantics(spec: ModelSpec) -> None:
    """Layout-specific fields, list lengths, stage indices. Fills ``stages.dims`` from ``embed_dim``
    and broadcasts an int ``stages.heads`` to a list. Raises a located :class:`SpecError`."""
    raw = spec._raw
    # `block` and `stages.depths` are required, but not in the JSON Schema (a spec that extends
    # another one legitimately omits them), so they are checked here.
    if spec.block is None:
        raise spec.error(("block",), "missing required key 'block'")
    if spec.layout == "hierarchical":
        _check_hierarchical(spec, raw)
    else:
        for f in _HIER_ONLY:
            if f in raw and raw[f] is not None:
                raise spec.error((f,), f"'{f}' belongs to the hierarchical layout (this spec has layout: isotropic)")
        for f in ("dim", "depth"):
            if getattr(spec, f) is None:
                raise spec.error(("layout",) if "layout" in raw else (),
                                 f"missing key '{f}' (required by layout: isotropic)")
        if spec.patch_size is None and spec.stem is None:
            raise spec.error(("layout",) if "layout" in raw else (),
                             "missing key 'patch_size' (required by layout: isotropic unless a stem is given)")
    check_sizes(spec)
    for name in spec.plugins:
        if not name or not all(part.isidentifier() for part in name.split(".")):
            i = spec.plugins.index(name)
            raise spec.error(("plugins", i), f"not a Python module name: {_describe(name)}")


def _bound(spec: ModelSpec, path: PathT, name: str, value: int | None, what: str) -> None:
    """Raise a located :class:`SpecError` naming the limit when ``value`` is over ``limits().name``
    (an optional field left unset, e.g. ``heads`` of an SSM-only spec, is not bounded)."""
    if value is not None and value > getattr(limits(), name):
        raise spec.error(path, f"{what} is {value}, more than allowed {limit_hint(name)}")


def check_sizes(spec: ModelSpec) -> None:
    """Every size the spec asks for is within :class:`~archdsl.language.limits.Limits` (so no spec
    can make the compiler run for hours or allocate without bound). Run after the layout checks."""
    _bound(spec, ("image_size",), "max_image_size", spec.image_size, "image_size")
    _bound(spec, ("in_chans",), "max_in_chans", spec.in_chans, "in_chans")
    _bound(spec, ("num_classes",), "max_num_classes", spec.num_classes, "num_classes")
    if spec.layout == "isotropic":
        _bound(spec, ("depth",), "max_stage_depth", spec.depth, "depth")
        _bound(spec, ("depth",), "max_total_blocks", spec.depth, "the number of blocks")
        _bound(spec, ("dim",), "max_width", spec.dim, "dim")
        _bound(spec, ("heads",), "max_heads", spec.heads, "heads")
        if spec.patch_size is not None:
            _bound(spec, ("patch_size",), "max_image_size", spec.patch_size, "patch_size")
        return
    st = spec.stages
    for i, d in enumerate(st.depths):
        _bound(spec, ("stages", "depths", i), "max_stage_depth", d, f"the depth of stage {i}")
    _bound(spec, ("stages", "depths"), "max_total_blocks", sum(st.depths), "the number of blocks (all stages)")
    raw = spec._raw.get("stages") or {}
    for key, name, values in (("dims", "max_width", st.dims), ("heads", "max_heads", st.heads or [])):
        for i, v in enumerate(values):
            # a per-stage list points at its item; embed_dim / one int for all stages at that key
            path = ("stages", key, i) if isinstance(raw.get(key), list) else \
                ("stages", "embed_dim" if key == "dims" else key)
            _bound(spec, path, name, v, f"the {'width' if key == 'dims' else 'heads'} of stage {i}")


def _draft07(model: type, title: str, ident: str) -> dict:
    """A draft-07 JSON Schema of ``model``: the draft yaml-language-server (VS Code YAML, Neovim)
    supports fully (it warns on 2020-12). Definitions live under ``definitions``."""
    schema = model.model_json_schema(ref_template="#/definitions/{model}")
    out = {"$schema": "http://json-schema.org/draft-07/schema#",
           "$id": f"https://archdsl.invalid/schema/{ident}.json"}
    defs = schema.pop("$defs", None)
    out.update(schema)
    if defs:
        out["definitions"] = defs
    out["title"] = title
    return out


def json_schema() -> dict:
    """The JSON Schema (draft-07) of a model spec, for yaml-language-server and other editors."""
    return _draft07(ModelSpec, "archdsl model spec", "model-spec")


def template_json_schema() -> dict:
    """The JSON Schema (draft-07) of a block template file."""
    return _draft07(TemplateModel, "archdsl block template", "block-template")
