"""Schema validation: types, unknown keys with did-you-mean, cross-field rules, JSON Schema."""
import json

import pytest
from spec_helpers import TINY, write

from archdsl.errors import SpecError
from archdsl.language import ModelSpec, json_schema, load_spec, load_spec_dict


def _err(tmp_path, text, name="s.yaml"):
    p = write(tmp_path, name, text)
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    return ei.value, str(p)


def test_tiny_loads_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, "t.yaml", TINY))
    assert isinstance(spec, ModelSpec)
    assert spec.name == "tiny" and spec.in_chans == 3 and spec.drop_path == 0.0
    assert spec.stages.dims == [8, 16] and spec.stages.heads == [2, 4]
    assert spec.block == {"type": "mlla", "mlp_ratio": 2.0}
    plan = spec.stage_plan()
    assert [(s.dim, s.depth, s.heads) for s in plan] == [(8, 1, 2), (16, 2, 4)]


def test_embed_dim_and_int_heads_are_normalised(tmp_path):
    text = TINY.replace("dims: [8, 16]", "embed_dim: 8").replace("heads: [2, 4]", "heads: 2")
    spec = load_spec(write(tmp_path, "t.yaml", text))
    assert spec.stages.dims == [8, 16] and spec.stages.heads == [2, 2]


def test_name_defaults_to_file_stem(tmp_path):
    spec = load_spec(write(tmp_path, "my_model.yaml", TINY.replace("name: tiny\n", "")))
    assert spec.name == "my_model"


def test_unknown_key_did_you_mean(tmp_path):
    e, p = _err(tmp_path, TINY.replace("  depths:", "  depht:"))
    assert str(e) == f"{p}:8:3: stages.depht: unknown key 'depht' (did you mean 'depths'?)"
    e, p = _err(tmp_path, TINY + "drop_pth: 0.1\n")
    assert str(e) == f"{p}:16:1: drop_pth: unknown key 'drop_pth' (did you mean 'drop_path'?)"


def test_list_length_named(tmp_path):
    e, p = _err(tmp_path, TINY.replace("heads: [2, 4]", "heads: [2, 4, 8]"))
    assert str(e) == f"{p}:9:3: stages.heads: expected 2 values (one per stage), got 3"
    e, p = _err(tmp_path, TINY.replace("dims: [8, 16]", "dims: [8]"))
    assert str(e) == f"{p}:7:3: stages.dims: expected 2 values (one per stage, as stages.depths), got 1"


@pytest.mark.parametrize("old,new,where,msg", [
    ("image_size: 32", "image_size: '32'", "3:1: image_size", "expected an integer, got '32'"),
    ("image_size: 32", "image_size: 0", "3:1: image_size", "must be >= 1, got 0"),
    ("depths: [1, 2]", "depths: [1, two]", "8:15: stages.depths.1", "expected an integer, got 'two'"),
    ("depths: [1, 2]", "depths: [1, true]", "8:15: stages.depths.1", "expected an integer, got True"),
    ("layout: hierarchical", "layout: hierarchal", "2:1: layout",
     "expected one of 'hierarchical', 'isotropic', got 'hierarchal' (did you mean 'hierarchical'?)"),
    ("head: norm_pool_linear", "head: 3", "15:1: head",
     "expected a component name or a mapping {type: name, ...}, got 3"),
    ("block: {type: mlla, mlp_ratio: 2.0}", "block: {mlp_ratio: 2.0}", "11:1: block",
     "a component given as a mapping needs a 'type' key (the component name), got keys ['mlp_ratio']"),
])
def test_type_errors_are_located(tmp_path, old, new, where, msg):
    e, p = _err(tmp_path, TINY.replace(old, new))
    assert str(e).startswith(f"{p}:{where}: ")
    assert str(e).endswith(msg)


def test_layout_specific_fields(tmp_path):
    e, p = _err(tmp_path, TINY + "depth: 12\n")
    assert str(e) == (f"{p}:16:1: depth: 'depth' belongs to the isotropic layout (this spec has layout: "
                      "hierarchical; use stages.* for per-stage sizes)")
    e, p = _err(tmp_path, "layout: isotropic\ndim: 16\ndepth: 2\nheads: 2\npatch_size: 4\nblock: mlla\n"
                          "stages: {dims: [8], depths: [1]}\n")
    assert str(e) == f"{p}:7:1: stages: 'stages' belongs to the hierarchical layout (this spec has layout: isotropic)"
    e, p = _err(tmp_path, "layout: isotropic\ndim: 16\nheads: 2\npatch_size: 4\nblock: mlla\n")
    assert str(e) == f"{p}:1:1: layout: missing key 'depth' (required by layout: isotropic)"


def test_missing_block_and_stages(tmp_path):
    e, p = _err(tmp_path, TINY.replace("block: {type: mlla, mlp_ratio: 2.0}\n", ""))
    assert str(e) == f"{p}:1:1: block: missing required key 'block'"
    e, p = _err(tmp_path, "block: mlla\n")
    assert str(e) == f"{p}:1:1: missing key 'stages' (required by layout: hierarchical)"


def test_override_index_range(tmp_path):
    e, p = _err(tmp_path, TINY.replace("  heads: [2, 4]\n",
                                       "  heads: [2, 4]\n  override:\n    2: {mixer: softmax_attention}\n"))
    assert str(e) == f"{p}:11:5: stages.override.2: stage index 2 out of range (this spec has 2 stages: 0..1)"


def test_stage_override_patch_merges_onto_global_mixer(tmp_path):
    text = TINY.replace("  heads: [2, 4]\n", "  heads: [2, 4]\n  override:\n    1: {mixer: {normalize: false}}\n")
    plan = load_spec(write(tmp_path, "t.yaml", text)).stage_plan()
    assert plan[0].mixer == {"type": "linear_attention", "positional": ["rope2d", "lepe"]}
    assert plan[1].mixer == {"type": "linear_attention", "positional": ["rope2d", "lepe"], "normalize": False}
    assert plan[1].mixer_path == ("stages", "override", 1, "mixer")


def test_locate_falls_back_to_parent(tmp_path):
    p = write(tmp_path, "t.yaml", TINY)
    spec = load_spec(p)
    assert spec.source_file == str(p)
    assert spec.locate("mixer.positional.1") == {"file": str(p), "line": 14, "col": 24, "path": "mixer.positional.1"}
    assert spec.locate(("mixer", "not_there")) == {"file": str(p), "line": 12, "col": 1, "path": "mixer.not_there"}
    e = spec.error("stages.heads.1", "bad")
    assert str(e) == f"{p}:9:14: stages.heads.1: bad"


def test_load_spec_dict():
    import yaml

    spec = load_spec_dict(yaml.safe_load(TINY), source="<sample 3>")
    assert spec.stages.depths == [1, 2]
    with pytest.raises(SpecError) as ei:
        load_spec_dict({**yaml.safe_load(TINY), "mixr": "x"}, source="<sample 3>")
    assert str(ei.value) == "<sample 3>: mixr: unknown key 'mixr' (did you mean 'mixer'?)"


def test_json_schema_is_usable():
    schema = json_schema()
    json.dumps(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    for key in ("name", "extends", "layout", "stages", "block", "mixer", "blocks", "drop_path"):
        assert key in props, key
        assert props[key].get("description") or props[key].get("title")
    assert props["layout"]["enum"] == ["hierarchical", "isotropic"]
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"  # what yaml-language-server supports
    assert "StagesSpec" in schema["definitions"] and "$defs" not in json.dumps(schema)
    assert "required" not in schema  # a spec that extends another may omit anything
    assert "depths" in schema["definitions"]["StagesSpec"]["properties"]


def test_json_schema_accepts_shipped_specs_and_rejects_typos():
    jsonschema = pytest.importorskip("jsonschema")
    import glob
    import json as _json

    import yaml
    from spec_helpers import FIXTURES

    jsonschema.Draft7Validator.check_schema(json_schema())
    validator = jsonschema.Draft7Validator(json_schema())
    files = glob.glob(str(FIXTURES.parent.parent.parent / "specs" / "**" / "*.yaml"), recursive=True)
    files += [str(p) for p in FIXTURES.glob("*.yaml")]
    for f in files:
        data = _json.loads(_json.dumps(yaml.safe_load(open(f))))  # JSON view: int keys become strings
        if "space" in data or "/search/" in f:  # a search-space file, not a model spec
            continue
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (f, errors)
    bad = _json.loads(_json.dumps(yaml.safe_load(TINY)))
    bad["stages"]["depht"] = [1]
    bad["stages"]["override"] = {"x": {"block": "mlla"}}
    def flat(errors):
        for e in errors:
            yield e.message
            yield from flat(e.context)

    msgs = " ".join(flat(validator.iter_errors(bad)))
    assert "'depht' was unexpected" in msgs and "'x' does not match" in msgs


def test_mapping_keys_of_the_wrong_type(tmp_path):
    e, p = _err(tmp_path, TINY.replace("  heads: [2, 4]\n", "  heads: [2, 4]\n  override:\n    '1': {mixer: x}\n"))
    assert str(e) == f"{p}:11:5: stages.override: keys of 'stages.override' must be integers (stage indices), got '1'"
    e, p = _err(tmp_path, TINY + "blocks:\n  1: {body: gelu}\n")
    assert str(e) == f"{p}:17:3: blocks: keys of 'blocks' must be strings (names), got 1"


def test_stage_plan_says_where_dims_and_heads_were_written(tmp_path):
    spec = load_spec(write(tmp_path, "t.yaml", TINY))
    assert [(p.dim_path, p.heads_path) for p in spec.stage_plan()] == [
        (("stages", "dims", 0), ("stages", "heads", 0)), (("stages", "dims", 1), ("stages", "heads", 1))]
    text = TINY.replace("dims: [8, 16]", "embed_dim: 8").replace("heads: [2, 4]", "heads: 2")
    plan = load_spec(write(tmp_path, "u.yaml", text)).stage_plan()
    assert [(p.dim, p.heads, p.dim_path, p.heads_path) for p in plan] == [
        (8, 2, ("stages", "embed_dim"), ("stages", "heads")), (16, 2, ("stages", "embed_dim"), ("stages", "heads"))]
