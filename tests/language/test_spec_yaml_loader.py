"""The YAML loader: safe_load semantics, positions for every key and item, located errors."""
import pytest
import yaml

from archdsl.errors import SpecError
from archdsl.language.yaml_loader import Pos, format_path, load_yaml, load_yaml_file, parse_path

DOC = """\
name: x          # comment
stages:
  dims: [8, 16]
  depths:
    - 1
    - 2
mixer: {type: linear_attention, normalize: true}
3: three
"""


def test_same_data_as_safe_load():
    data, _ = load_yaml(DOC, "f.yaml")
    assert data == yaml.safe_load(DOC)


@pytest.mark.parametrize("text", [
    "a: 1.5e+3\nb: [yes, no, ~, 0x1F, '7']\n",     # (1.5e3 differs on purpose: a float, see below)
    "base: &b {k: 1, m: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  k: 2\n",
    "- 1\n- {a: b}\n",
    "a: 2020-01-02\nb: !!str 12\nc: !!float 3\n",
    "",
])
def test_safe_load_equivalence(text):
    data, _ = load_yaml(text, "f.yaml")
    assert data == yaml.safe_load(text)


def test_positions_of_keys_and_items():
    _, pos = load_yaml(DOC, "f.yaml")
    assert pos[()] == Pos("f.yaml", 1, 1)
    assert pos[("name",)] == Pos("f.yaml", 1, 1)
    assert pos[("stages", "dims")] == Pos("f.yaml", 3, 3)
    assert pos[("stages", "dims", 1)] == Pos("f.yaml", 3, 13)
    assert pos[("stages", "depths", 0)] == Pos("f.yaml", 5, 7)
    assert pos[("stages", "depths", 1)] == Pos("f.yaml", 6, 7)
    assert pos[("mixer", "normalize")] == Pos("f.yaml", 7, 33)
    assert pos[(3,)] == Pos("f.yaml", 8, 1)


def test_duplicate_key_names_both_lines():
    with pytest.raises(SpecError) as ei:
        load_yaml("stages:\n  heads: [1]\n  depths: [1]\n  heads: [2]\n", "s.yaml")
    e = ei.value
    assert (e.file, e.line, e.col, e.path) == ("s.yaml", 4, 3, "stages.heads")
    assert str(e) == "s.yaml:4:3: stages.heads: duplicate key 'heads' (first at line 2)"


def test_syntax_error_is_located():
    with pytest.raises(SpecError) as ei:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", "s.yaml")
    assert ei.value.file == "s.yaml" and ei.value.line == 3
    assert str(ei.value).startswith("s.yaml:3:")
    assert "invalid YAML" in str(ei.value)


def test_python_tags_refused():
    with pytest.raises(SpecError, match=r"s.yaml:1:4: invalid YAML: could not determine a constructor"):
        load_yaml("a: !!python/object/apply:os.system ['true']\n", "s.yaml")


def test_recursive_alias_and_multiple_documents():
    with pytest.raises(SpecError, match="recursive YAML alias"):
        load_yaml("a: &x [1, *x]\n", "s.yaml")
    with pytest.raises(SpecError, match="expected a single document"):
        load_yaml("a: 1\n---\nb: 2\n", "s.yaml")


def test_alias_bomb_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(SpecError, match="document too large"):
        load_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_non_mapping_key_rejected():
    with pytest.raises(SpecError, match=r"s.yaml:1:3: a mapping key must be a plain scalar"):
        load_yaml("? [1, 2]\n: x\n", "s.yaml")


def test_file_top_level_must_be_mapping(tmp_path):
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError) as ei:
        load_yaml_file(tmp_path / "l.yaml", display="l.yaml")
    assert str(ei.value) == "l.yaml:1:1: the top level of a spec must be a mapping of keys, got a list"
    (tmp_path / "e.yaml").write_text("# nothing\n")
    with pytest.raises(SpecError, match="got an empty document"):
        load_yaml_file(tmp_path / "e.yaml")
    with pytest.raises(SpecError, match="file not found: nope.yaml"):
        load_yaml_file(tmp_path / "nope.yaml", display="nope.yaml")


def test_path_helpers():
    assert parse_path("stages.depths.0") == ("stages", "depths", 0)
    assert format_path(("stages", "override", 3, "mixer")) == "stages.override.3.mixer"


def test_merge_keys_positions():
    text = "base: &b {k: [1, 2], m: 3}\nuse:\n  <<: *b\n  k: 5\n"
    data, pos = load_yaml(text, "f.yaml")
    assert data["use"] == {"k": 5, "m": 3}
    assert pos[("use", "k")] == Pos("f.yaml", 4, 3)
    assert ("use", "k", 0) not in pos  # the merged list was replaced
    assert pos[("use", "m")] == Pos("f.yaml", 1, 22)  # where the merged value was written


def test_exponent_floats_read_as_yaml_1_2():
    from archdsl.language.yaml_loader import load_value

    data, _ = load_yaml("a: [2e-3, 1e6, 4.69e13, .5e3, 1.5, 12, 1.0e+5, -2E2, '2e3']")
    assert data["a"] == [0.002, 1e6, 4.69e13, 500.0, 1.5, 12, 1e5, -200.0, "2e3"]
    assert [type(v) for v in data["a"][:5]] == [float] * 5 and type(data["a"][5]) is int
    assert load_value("[1e-4, 3]") == [1e-4, 3]
