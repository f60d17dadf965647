"""extends: chains, merge rules, cycles, missing files; --set overrides."""
import pytest
from spec_helpers import TINY, write

from archdsl.errors import SpecError
from archdsl.language import load_spec


@pytest.fixture
def chain(tmp_path):
    """base.yaml <- sub/mid.yaml <- sub/deep/leaf.yaml (3 levels, relative paths, two directories)."""
    write(tmp_path, "base.yaml", TINY)
    write(tmp_path, "sub/mid.yaml", """
        extends: ../base.yaml
        name: mid
        stages: {depths: [2, 2]}
        mixer: {normalize: false}
        """)
    leaf = write(tmp_path, "sub/deep/leaf.yaml", """
        extends: ../mid.yaml
        name: leaf
        mixer: {positional: null, shortcut: true}
        head: null
        """)
    return tmp_path, leaf


def test_three_level_chain_deep_merges(chain):
    root, leaf = chain
    spec = load_spec(leaf)
    assert spec.name == "leaf"
    assert spec.stages.dims == [8, 16] and spec.stages.depths == [2, 2] and spec.stages.heads == [2, 4]
    assert spec.mixer == {"type": "linear_attention", "normalize": False, "shortcut": True}  # positional deleted
    assert spec.head is None and "head" not in spec.to_dict()  # `null` deletes an inherited key
    assert spec.block == {"type": "mlla", "mlp_ratio": 2.0}
    # positions point at the file that wrote each value
    assert spec.locate("stages.depths")["file"].endswith("sub/mid.yaml")
    assert spec.locate("stages.dims")["file"].endswith("base.yaml")
    assert spec.locate("mixer.shortcut")["file"] == str(leaf)
    assert spec.locate("mixer.shortcut")["line"] == 3


def test_extends_list_later_wins(tmp_path):
    write(tmp_path, "a.yaml", TINY)
    write(tmp_path, "b.yaml", "drop_path: 0.3\nnum_classes: 5\n")
    spec = load_spec(write(tmp_path, "c.yaml", "extends: [a.yaml, b.yaml]\nnum_classes: 7\n"))
    assert spec.drop_path == 0.3 and spec.num_classes == 7 and spec.name == "tiny"


def test_component_with_other_type_replaces(tmp_path):
    write(tmp_path, "a.yaml", TINY)
    spec = load_spec(write(tmp_path, "c.yaml", "extends: a.yaml\nmixer: {type: softmax_attention, window_size: 4}\n"))
    assert spec.mixer == {"type": "softmax_attention", "window_size": 4}
    spec = load_spec(write(tmp_path, "d.yaml", "extends: a.yaml\nmixer: softmax_attention\n"))
    assert spec.mixer == "softmax_attention"
    # options without type over a name keep the name
    write(tmp_path, "e.yaml", TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: mlla"))
    spec = load_spec(write(tmp_path, "f.yaml", "extends: e.yaml\nblock: {mlp_ratio: 3.0}\n"))
    assert spec.block == {"type": "mlla", "mlp_ratio": 3.0}


def test_cycle_reports_chain(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "name: b\nextends: c.yaml\n")
    write(tmp_path, "c.yaml", "extends: a.yaml\n")
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path / "a.yaml")
    e = ei.value
    assert e.message == f"extends cycle: {tmp_path}/a.yaml -> {tmp_path}/b.yaml -> {tmp_path}/c.yaml -> {tmp_path}/a.yaml"
    assert (e.file, e.line, e.col) == (f"{tmp_path}/c.yaml", 1, 1)


def test_self_extends(tmp_path):
    p = write(tmp_path, "a.yaml", "name: a\nextends: ./a.yaml\n")
    with pytest.raises(SpecError, match=r"a.yaml:2:1: extends: extends cycle: .*a.yaml -> .*a.yaml$"):
        load_spec(p)


def test_missing_base_is_located_at_extends_line(tmp_path):
    p = write(tmp_path, "a.yaml", "name: a\nextends: [ok.yaml, nope.yaml]\n")
    write(tmp_path, "ok.yaml", TINY)
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert str(ei.value) == (f"{p}:2:20: extends.1: cannot extend 'nope.yaml': file not found "
                             f"({tmp_path}/nope.yaml)")


def test_extends_wrong_type(tmp_path):
    p = write(tmp_path, "a.yaml", "extends: 3\n")
    with pytest.raises(SpecError, match=r"a.yaml:1:1: extends: expected a file path or a list of file paths, got 3"):
        load_spec(p)


# ------------------------------------------------------------------ overrides
@pytest.fixture
def tiny(tmp_path):
    return write(tmp_path, "t.yaml", TINY)


def test_overrides_scalars_lists_and_indices(tiny):
    spec = load_spec(tiny, ["drop_path=0.25", "stages.depths=[3, 1]", "stages.heads.1=8",
                            "mixer.normalize=false", "num_classes=2"], image_size=48)
    assert spec.drop_path == 0.25 and spec.stages.depths == [3, 1] and spec.stages.heads == [2, 8]
    assert spec.mixer["normalize"] is False and spec.num_classes == 2 and spec.image_size == 48
    assert spec.locate("stages.heads.1") == {"file": "<--set>", "line": 3, "col": None, "path": "stages.heads.1"}


def test_override_on_a_component_name_makes_a_mapping(tiny):
    spec = load_spec(tiny, ["head.dropout=0.1"])
    assert spec.head == {"type": "norm_pool_linear", "dropout": 0.1}


def test_override_adds_stage_override(tiny):
    spec = load_spec(tiny, ["stages.override.1.mixer=softmax_attention"])
    assert spec.stage_plan()[1].mixer == "softmax_attention"


def test_override_null_deletes(tiny):
    spec = load_spec(tiny, ["mixer.positional=null"])
    assert spec.mixer == {"type": "linear_attention"}


@pytest.mark.parametrize("override,message", [
    ("stages.dpths=[1, 1]", "<--set>:1: stages.dpths: unknown key 'stages.dpths' (did you mean 'stages.depths'?)"),
    ("drop_pth=0.1", "<--set>:1: drop_pth: unknown key 'drop_pth' (did you mean 'drop_path'?)"),
    ("mixer.positionl=[]", "<--set>:1: mixer.positionl: unknown key 'mixer.positionl' (did you mean "
                           "'mixer.positional'?); to add it as a new key write --set +mixer.positionl=..."),
    ("stages.depths.5=1", "<--set>:1: stages.depths.5: 'stages.depths' is a list of 2 items; '5' is not a valid index"),
    ("name.x=1", "<--set>:1: name.x: cannot set 'name.x': 'name' is a str, not a mapping or list"),
    ("drop_path", "<--set>:1: expected KEY=VALUE, got 'drop_path'"),
    ("stages.depths=[1, 2", "<--set>:1: stages.depths: cannot parse the value '[1, 2': expected ',' or ']', "
                            "but got '<stream end>'"),
    ("stages.depths=[1, 1, 1]", None),
])
def test_override_errors(tiny, override, message):
    with pytest.raises(SpecError) as ei:
        load_spec(tiny, ["num_classes=3", override][1:])
    if message is not None:
        assert str(ei.value) == message
    else:  # the error is found by validation, and located at the override
        assert str(ei.value).startswith(f"{tiny}:7:3: stages.dims: expected 3 values")


def test_plus_forces_a_new_option(tiny):
    spec = load_spec(tiny, ["+mixer.positionl=[]"])
    assert spec.mixer["positionl"] == []
    # a new option that resembles nothing is accepted (the compiler checks it against the constructor)
    assert load_spec(tiny, ["mixer.input_gate=true"]).mixer["input_gate"] is True


def test_override_type_error_points_at_set(tiny):
    with pytest.raises(SpecError) as ei:
        load_spec(tiny, ["drop_path=0.1", "image_size=big"])
    assert str(ei.value) == "<--set>:2: image_size: expected an integer, got 'big'"


def test_load_spec_dict_extends_relative_to_base_dir(tmp_path):
    from archdsl.language import load_spec_dict

    write(tmp_path, "specs/base.yaml", TINY)
    spec = load_spec_dict({"extends": "base.yaml", "name": "trial_1", "stages": {"depths": [2, 2]}},
                          source="<trial 1>", base_dir=tmp_path / "specs", overrides=["drop_path=0.1"])
    assert spec.name == "trial_1" and spec.stages.depths == [2, 2] and spec.drop_path == 0.1
    assert spec.locate("stages.dims")["file"] == f"{tmp_path}/specs/base.yaml"
    with pytest.raises(SpecError) as ei:
        load_spec_dict({"extends": "base.yaml", "stages": {"heads": [1]}}, source="<trial 2>",
                       base_dir=tmp_path / "specs")
    assert str(ei.value) == "<trial 2>: stages.heads: expected 2 values (one per stage), got 1"
