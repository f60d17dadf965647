"""Block templates: structure checks, lookup order, parameters, $variable substitution."""
import pytest
from spec_helpers import TINY, write

from archdsl.errors import SpecError
from archdsl.language import load_spec, load_template, substitute
from archdsl.language.templates import BUILTIN_DIR, block_kind, load_template_file

INLINE = TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: {type: two, hidden: 12}") + """\
blocks:
  two:
    params: {hidden: int, act: gelu}
    body:
      - residual:
          - {norm: layernorm, name: norm1}
          - {linear: $hidden, name: fc1}
          - $act
          - {linear: $dim, name: fc2}
"""


def test_builtin_mlla_template_is_valid():
    tpl = load_template_file(BUILTIN_DIR / "mlla.yaml", display="archdsl/blocks/mlla.yaml", origin="builtin")
    assert tpl.name == "mlla" and tpl.params == {"mlp_ratio": 4.0}
    assert tpl.locate(("body", 0))["file"] == "archdsl/blocks/mlla.yaml"


def test_inline_template_variables_and_instantiate(tmp_path):
    spec = load_spec(write(tmp_path, "s.yaml", INLINE))
    assert block_kind(spec.block, spec) == "template"
    tpl = load_template(spec.block, spec)
    assert tpl.origin == "inline" and tpl.name == "two"
    v = tpl.variables({"hidden": 12}, {"dim": 8, "heads": 2})
    assert v == {"act": "gelu", "dim": 8, "heads": 2, "hidden": 12}
    body = tpl.instantiate(v)
    assert body == [{"residual": [{"norm": "layernorm", "name": "norm1"}, {"linear": 12, "name": "fc1"}, "gelu",
                                  {"linear": 8, "name": "fc2"}]}]
    loc = tpl.locate(("body", 0, "residual", 1))
    assert (loc["line"], loc["col"], loc["path"]) == (22, 13, "blocks.two.body.0.residual.1")


def test_params_checked(tmp_path):
    spec = load_spec(write(tmp_path, "s.yaml", INLINE))
    tpl = load_template(spec.block, spec)
    at = spec.locate("block")
    with pytest.raises(SpecError, match=r"unknown option 'hiden' for block 'two' \(did you mean 'hidden'\?\)"):
        tpl.variables({"hiden": 3}, {"dim": 8}, at)
    with pytest.raises(SpecError, match=r"block 'two' needs parameter 'hidden' \(int\)"):
        tpl.variables({}, {"dim": 8}, at)
    with pytest.raises(SpecError, match=r"parameter 'hidden' expects int, got 'x'"):
        tpl.variables({"hidden": "x"}, {"dim": 8}, at)
    # a callable `at` locates an unknown option at its own key
    with pytest.raises(SpecError) as ei:
        tpl.variables({"hiden": 3}, {"dim": 8}, lambda sub: spec.locate(("block",) + sub))
    assert ei.value.path == "block.hiden" and ei.value.line == 11


def test_substitute_forms():
    loc = lambda p: {"file": "t.yaml", "line": 1, "col": 1, "path": ".".join(map(str, p))}
    v = {"dim": 64, "mlp_ratio": 4.0, "index": 2, "mixer": {"type": "linear_attention"}}
    node = {"a": "$mixer", "b": "$dim * 2", "c": "int($dim * $mlp_ratio)", "d": "blk$index", "e": "$$dim",
            "f": ["$dim // 3", 5], "g": "($dim + 1) % 7"}
    out = substitute(node, v, loc)
    assert out == {"a": {"type": "linear_attention"}, "b": 128, "c": 256, "d": "blk2", "e": "$dim",
                   "f": [21, 5], "g": 2}
    assert out["a"] is not v["mixer"]  # a copy


def test_substitute_unknown_variable_is_located():
    pos = {("body", 1, "mixer"): 7}
    loc = lambda p: {"file": "blk.yaml", "line": pos.get(("body",) + tuple(p), 1), "col": 3,
                     "path": "body." + ".".join(map(str, p))}
    with pytest.raises(SpecError) as ei:
        substitute([{"linear": "$dim"}, {"mixer": "$mixr"}], {"dim": 4, "mixer": "x"}, loc)
    assert str(ei.value) == ("blk.yaml:7:3: body.1.mixer: unknown template variable '$mixr' "
                             "(did you mean '$mixer'?); known: $dim, $mixer")


def test_substitute_bad_arithmetic():
    loc = lambda p: {"file": "t.yaml", "line": 2, "col": 1, "path": "x"}
    with pytest.raises(SpecError, match=r"cannot evaluate '\$dim / 0'"):
        substitute("$dim / 0", {"dim": 4}, loc)
    with pytest.raises(SpecError, match=r"cannot evaluate '\$mixer \* 2': '\$mixer' is 'la', not a number"):
        substitute("$mixer * 2", {"mixer": "la"}, loc)


@pytest.mark.parametrize("body,where,message", [
    ("body: {linear: 8, gelu: null}", "18:5: blocks.t.body",
     "a node mapping has exactly one primitive or combinator key plus an optional 'name', got 'linear', 'gelu'"),
    ("body: {seq: {linear: 8}}", "18:12: blocks.t.body.seq", "'seq' takes a list of nodes, got a mapping"),
    ("body: {branch: {a: gelu, b: silu, merge: mull}}", "18:39: blocks.t.body.branch.merge",
     "expected one of mul, add, concat, got 'mull' (did you mean 'mul'?)"),
    ("body: {branch: [gelu]}", "18:12: blocks.t.body.branch",
     "'branch' takes a mapping {path: node, ..., merge: mul|add|concat}, got a list"),
    ("body: [gelu, 3]", "18:18: blocks.t.body.1",
     "expected a node: a list, a primitive name, or a mapping {primitive: argument}, got a number 3"),
    ("body: {linear: 8, name: a.b}", "18:23: blocks.t.body.name",
     "'name' must be a non-empty string without '.' (the module's attribute name), got 'a.b'"),
    ("params: {dim: int}\n    body: gelu", "18:14: blocks.t.params.dim", "template param 'dim' shadows the built-in variable $dim"),
    ("bdy: gelu", "18:5: blocks.t.bdy", "unknown key 'bdy' (did you mean 'body'?)"),
])
def test_template_structure_errors(tmp_path, body, where, message):
    text = TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: t") + "blocks:\n  t:\n    " + body + "\n"
    p = write(tmp_path, "s.yaml", text)
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert str(ei.value) == f"{p}:{where}: {message}"


def test_template_file_relative_to_the_spec(tmp_path):
    write(tmp_path, "blocks/mine.yaml", """
        block: mine
        params: {ratio: 2}
        body:
          - residual: [{norm: layernorm}, {mlp: {ratio: $ratio}}]
        """)
    spec = load_spec(write(tmp_path, "s.yaml", TINY.replace("block: {type: mlla, mlp_ratio: 2.0}",
                                                              "block: blocks/mine.yaml")))
    tpl = load_template(spec.block, spec)
    assert tpl.origin == "file" and tpl.name == "mine" and tpl.file == f"{tmp_path}/blocks/mine.yaml"
    with pytest.raises(SpecError, match=r"s2.yaml:11:1: block: block template file not found: other.yaml"):
        load_spec(write(tmp_path, "s2.yaml", TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: other.yaml")))


def test_unknown_block_did_you_mean(tmp_path):
    p = write(tmp_path, "s.yaml", TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: mlaa"))
    with pytest.raises(SpecError, match=r"s.yaml:11:1: block: unknown block 'mlaa' \(did you mean 'mlla'\?\)"):
        load_spec(p)
