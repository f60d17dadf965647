"""What editors and ``archdsl list --options`` know about components: each registered component's
options, read from its constructor's signature (names, JSON types, defaults), and the JSON Schema of a
model spec in which every component reference is checked: a known name (an enum per kind), and for
``{type: NAME, ...}`` exactly NAME's options (``if``/``then`` per name, no other keys), plus the
fields of the other layout forbidden (``if``/``then``/``else`` on ``layout``).

Only the components registered when the schema is made are in it (built-ins, plus plugins imported
before); block templates are named by the shipped ones and Python blocks, and any other string
(an inline ``blocks:`` name or a ``.yaml`` path) stays allowed for ``block``.
"""
from __future__ import annotations

import copy
import inspect
import typing
from typing import Any, Dict, List

import yaml

from archdsl import registry
from archdsl.language.schema import json_schema
from archdsl.language.templates import BUILTIN_DIR, Required, builtin_template_names, load_template_file

__all__ = ["POSITIONAL", "component_options", "spec_json_schema", "REF_FIELDS", "option_type_text"]

# constructor arguments the compiler passes positionally (not options), per kind
POSITIONAL = {"mixer": ("dim",), "stem": ("in_chans", "dim"), "downsample": ("dim_in", "dim_out"),
              "head": ("dim", "num_classes"), "posenc": ("dim",),
              "block": ("dim", "heads", "mixer", "drop_path")}
# spec fields holding a component reference -> kind
REF_FIELDS = {"stem": "stem", "downsample": "downsample", "block": "block", "mixer": "mixer", "head": "head"}
_ISO_ONLY = ("patch_size", "dim", "depth", "heads", "class_token")
_HIER_ONLY = ("stages", "downsample")


def _json_type(tp: Any) -> dict:
    """A JSON Schema for a Python annotation (best effort: ``{}`` means anything)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    simple = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null",
              dict: "object", list: "array", tuple: "array"}
    if tp in simple:
        return {"type": simple[tp]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_json_type(a) for a in args]
        return {} if any(not p for p in parts) else {"anyOf": parts}
    if origin in (list, tuple) or str(origin).endswith(("Sequence'>", "Iterable'>")):
        return {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    return {}


def _target(kind: str, name: str) -> Any:
    return registry.get(kind, name)


def component_options(kind: str, name: str) -> List[Dict[str, Any]]:
    """The options of a registered component or shipped template: ``[{name, schema, default,
    required}]`` in signature order (a template's ``params``)."""
    if kind == "block" and not registry.has("block", name) and name in builtin_template_names():
        tpl = load_template_file(BUILTIN_DIR / f"{name}.yaml")
        return [{"name": k, "schema": {} if isinstance(v, Required) else _json_type(type(v)),
                 "default": None if isinstance(v, Required) else v, "required": isinstance(v, Required)}
                for k, v in tpl.params.items()]
    target = _target(kind, name)
    init = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be resolved: no types
        hints = {}
    out = []
    for p in list(inspect.signature(target).parameters.values()):
        if p.name in POSITIONAL.get(kind, ()) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        required = p.default is inspect.Parameter.empty
        if kind == "mixer" and p.name == "heads":  # the block's $heads unless the mixer ref sets it
            out.append({"name": "heads", "schema": {"type": "integer", "minimum": 1},
                        "default": "$heads" if required else p.default, "required": False})
            continue
        out.append({"name": p.name, "schema": _json_type(hints.get(p.name, Any)),
                    "default": None if required else p.default, "required": required})
    return out


def _names(kind: str) -> List[str]:
    names = set(registry.names(kind))
    if kind == "block":
        names |= set(builtin_template_names())
    return sorted(names)


def _options_schema(kind: str, name: str) -> dict:
    props: Dict[str, Any] = {"type": {"const": name}}
    for opt in component_options(kind, name):
        s = dict(opt["schema"])
        if not opt["required"] and isinstance(opt["default"], (bool, int, float, str, type(None))):
            s["default"] = opt["default"]
        props[opt["name"]] = s
    return {"properties": props, "additionalProperties": False}


def ref_schema(kind: str) -> dict:
    """A component reference of ``kind``: a known name, ``{type: known name, its options}``, or
    options without ``type`` (a patch merged onto an inherited reference)."""
    names = _names(kind)
    name_schema: dict = {"type": "string", "enum": names, "description": f"a registered {kind}"}
    if kind == "block":  # inline `blocks:` templates and .yaml paths are blocks too
        name_schema = {"type": "string", "description": "a block template or Python block: " + ", ".join(names)}
    typed: dict = {"type": "object", "required": ["type"],
                   "properties": {"type": {"type": "string"} if kind == "block" else {"enum": names}},
                   "allOf": [{"if": {"properties": {"type": {"const": n}}, "required": ["type"]},
                              "then": _options_schema(kind, n)} for n in names]}
    patch = {"type": "object", "not": {"required": ["type"]},
             "description": "options only: merged onto the component the base spec (extends) names"}
    return {"anyOf": [name_schema, typed, patch]}


def spec_json_schema() -> dict:
    """The model spec's JSON Schema (draft-07) with component enums, per-component options and the
    layout-conditional fields."""
    schema = copy.deepcopy(json_schema())
    props = schema["properties"]
    for field, kind in REF_FIELDS.items():
        props[field] = {**{k: props[field][k] for k in ("title", "description") if k in props[field]},
                        **ref_schema(kind)}
    pos = ref_schema("posenc")
    props["posenc"] = {**{k: props["posenc"][k] for k in ("title", "description") if k in props["posenc"]},
                       "anyOf": [pos, {"type": "array", "items": pos}]}
    override = schema.get("definitions", {}).get("StageOverride", {}).get("properties", {})
    for field in ("block", "mixer"):
        if field in override:
            override[field] = {k: override[field][k] for k in ("title", "description") if k in override[field]}
            override[field].update(ref_schema(field))
    # the other layout's fields: by the written layout, or hierarchical (the default) when neither
    # `layout` nor `extends` (which may bring one) is written
    no_hier = {"properties": {f: False for f in _HIER_ONLY}}
    no_iso = {"properties": {f: False for f in _ISO_ONLY}}
    schema["allOf"] = [
        {"if": {"properties": {"layout": {"const": "isotropic"}}, "required": ["layout"]}, "then": no_hier},
        {"if": {"properties": {"layout": {"const": "hierarchical"}}, "required": ["layout"]}, "then": no_iso},
        {"if": {"not": {"anyOf": [{"required": ["layout"]}, {"required": ["extends"]}]}}, "then": no_iso}]
    return schema


def _first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def option_type_text(schema: Dict[str, Any], sep: str = " | ") -> str:
    """An option's JSON schema in short: its type, its enum values, or the ``sep``-joined union."""
    def one(a: Dict[str, Any]) -> str:
        return str(a.get("type", a.get("enum", "any")))
    return one(schema) if "type" in schema or "enum" in schema else sep.join(map(one, schema.get("anyOf", []))) or "any"


def _option_text(o: Dict[str, Any]) -> str:
    typ = option_type_text(o["schema"], " \\| ")
    return f"`{o['name']}` ({typ}, " + ("required)" if o["required"] else f"default `{o['default']!r}`)")


def _builtin(kind: str, name: str) -> bool:
    if kind == "block" and not registry.has("block", name):
        return True  # a shipped template
    return str(getattr(registry.get(kind, name), "__module__", "")).startswith("archdsl.")


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def components_markdown() -> str:
    """docs/components.md: every built-in stem, downsampler, head, positional encoding, mixer and
    shipped block with its options, and every template primitive with its argument (generated)."""
    lines = ["# Components and their options", "",
             "Generated by `archdsl list --markdown` from the registry (constructor signatures, template",
             "params, primitive docstrings); `tests/cli/test_schema_options.py` checks it is current.", ""]
    for kind in ("stem", "downsample", "head", "posenc", "mixer", "block"):
        lines += [f"## {kind}", "", "| name | options | what |", "|---|---|---|"]
        for name in (n for n in _names(kind) if _builtin(kind, n)):
            opts = ", ".join(_option_text(o) for o in component_options(kind, name)) or "(none)"
            if kind == "block" and not registry.has("block", name):
                what = (yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text()) or {}).get("doc") or "template"
            else:
                what = _first_paragraph(_target(kind, name))
            lines.append(f"| `{name}` | {opts} | {_cell(what)} |")
        lines.append("")
    lines += ["## primitive (template nodes)", "", "| node | argument |", "|---|---|"]
    for name in (n for n in registry.names("primitive") if _builtin("primitive", n)):
        lines.append(f"| `{name}` | {_cell(_first_paragraph(registry.get('primitive', name)))} |")
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"
