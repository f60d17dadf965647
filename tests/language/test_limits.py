"""The bounds of archdsl/language/limits.py: defaults, environment overrides, exact messages, and the
plugin opt-in of the Python API."""
import uuid

import pytest
from spec_helpers import TINY, write

from archdsl.errors import SpecError
from archdsl.language import load_spec
from archdsl.language.limits import Limits, limits, parse_size, set_limit
from archdsl.language.templates import substitute
from archdsl.language.yaml_loader import load_yaml

LOC = lambda p: {"file": "t.yaml"}  # noqa: E731


def test_defaults_and_env_override(monkeypatch):
    assert limits().max_stage_depth == Limits().max_stage_depth == 256
    monkeypatch.setenv("ARCHDSL_MAX_STAGE_DEPTH", "1000")
    assert limits().max_stage_depth == 1000
    monkeypatch.setenv("ARCHDSL_MAX_STAGE_DEPTH", "many")
    with pytest.raises(SpecError, match="environment variable ARCHDSL_MAX_STAGE_DEPTH: expected a positive number"):
        limits()


def test_parse_size_units():
    assert parse_size("4096") == 4096
    assert parse_size("8G") == parse_size("8GiB") == 8 << 30
    assert parse_size("512M") == 512 << 20
    for bad in ("", "-1", "0", "1X", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_set_limit_sets_the_environment(monkeypatch):
    monkeypatch.delenv("ARCHDSL_MAX_WIDTH", raising=False)
    set_limit("max_width=32768")
    assert limits().max_width == 32768
    monkeypatch.delenv("ARCHDSL_MAX_WIDTH")
    with pytest.raises(SpecError, match="did you mean 'max_width'"):
        set_limit("max_widht=3")


def test_size_bound_message_is_located(tmp_path):
    with pytest.raises(SpecError) as ei:
        load_spec(write(tmp_path, "s.yaml", TINY.replace("depths: [1, 2]", "depths: [1, 300]")))
    assert str(ei.value) == ("{}:8:15: stages.depths.1: the depth of stage 1 is 300, more than allowed (limit "
                             "max_stage_depth = 256; raise it with --limit max_stage_depth=N or "
                             "ARCHDSL_MAX_STAGE_DEPTH=N)".format(tmp_path / "s.yaml"))


def test_raised_limit_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHDSL_MAX_STAGE_DEPTH", "300")
    assert load_spec(write(tmp_path, "s.yaml", TINY.replace("depths: [1, 2]", "depths: [1, 300]"))).stages.depths == [1, 300]


@pytest.mark.parametrize("expr, message", [
    ("$dim * 10**11", "a value exceeds 1000000000000 in magnitude"),
    ("$dim" + "+1" * 150, "the expression has more than 200 terms"),
    ("(($dim ** 64) ** 64) ** 64", "64 ** 64 exceeds 1000000000000 in magnitude"),
    ("round($dim, -10**9)", "round() digits must be within -30..30, got -1000000000"),
    ("$dim / 0.0", "float division by zero"),
])
def test_expression_bounds(expr, message):
    with pytest.raises(SpecError) as ei:
        substitute(expr, {"dim": 64}, LOC)
    assert message in str(ei.value) and str(ei.value).startswith("t.yaml: cannot evaluate")


def test_expressions_within_bounds_still_work():
    assert substitute("int($dim * 2.5) + 2 ** 10 - max($dim, 3) // 2", {"dim": 64}, LOC) == 160 + 1024 - 32
    assert substitute("round($dim / 3, 2)", {"dim": 64}, LOC) == 21.33


def test_depth_and_node_bounds_located():
    with pytest.raises(SpecError, match=r"^s.yaml:1:68: nesting too deep: more than 64 levels"):
        load_yaml("a: " + "[" * 100 + "]" * 100, "s.yaml")
    with pytest.raises(SpecError, match=r"^s.yaml:1:19999: document too large: more than 10000 YAML nodes"):
        load_yaml("a: [" + "0," * 20_000 + "]", "s.yaml")
    data, _ = load_yaml("a: " + "[" * 63 + "]" * 63, "s.yaml")  # exactly at the bound: fine
    assert isinstance(data["a"], list)


def test_plugins_need_an_opt_in(tmp_path, monkeypatch):
    mod = f"plug_{uuid.uuid4().hex[:8]}"
    write(tmp_path, f"lib/{mod}.py", f"open(r'{tmp_path}/ran', 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.delenv("ARCHDSL_ALLOW_PLUGINS", raising=False)
    p = write(tmp_path, "s.yaml", TINY + f"plugins: [{mod}]\n")
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert (ei.value.line, ei.value.path) == (16, "plugins")
    assert "pass --allow-plugins (or set ARCHDSL_ALLOW_PLUGINS=1; Python: allow_plugins=True)" in ei.value.message
    assert not (tmp_path / "ran").exists()
    load_spec(p, allow_plugins=True)
    assert (tmp_path / "ran").exists()


def test_plugin_next_to_the_spec_is_not_on_the_path(tmp_path):
    mod = f"plug_{uuid.uuid4().hex[:8]}"
    write(tmp_path, f"{mod}.py", "x = 1\n")
    with pytest.raises(SpecError, match=f"spec's folder {tmp_path} is not on the Python path: add it explicitly "
                                        f"with PYTHONPATH={tmp_path}"):
        load_spec(write(tmp_path, "s.yaml", TINY + f"plugins: [{mod}]\n"), allow_plugins=True)


def test_every_limit_is_documented():
    from dataclasses import fields
    from pathlib import Path

    from archdsl.language.limits import env_name

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for f in fields(Limits):
        assert f"| `{f.name}` |" in doc and env_name(f.name) in doc, f.name
