"""Property: random mutations of shipped and fixture specs never raise anything but SpecError
from load_spec + compile on the meta device."""
import glob
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_helpers import FIXTURES

from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.language import load_spec

ROOT = FIXTURES.parent.parent.parent
SPEC_FILES = sorted(glob.glob(str(ROOT / "specs" / "**" / "*.yaml"), recursive=True)) + \
    sorted(str(p) for p in FIXTURES.glob("*.yaml"))


def _absolute_extends(data: dict, src: Path) -> dict:
    """Mutated specs are written elsewhere: make their extends paths absolute."""
    ext = data.get("extends")
    fix = lambda e: str((src.parent / e).resolve()) if isinstance(e, str) else e
    if isinstance(ext, str):
        data["extends"] = fix(ext)
    elif isinstance(ext, list):
        data["extends"] = [fix(e) for e in ext]
    return data


def _paths(node, prefix=()):
    """Every key path of a plain-data tree (mapping keys and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 64), st.floats(-2, 2), st.just(float("nan")), st.just(float("inf")),
                    st.sampled_from(["", "x", "mlla", "linear_attention", "$dim", "$nope", "gelu", "concat",
                                     "isotropic", "softmax_attention", "../x.yaml", "1e3", "relu"]),
                    st.text(max_size=6))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.sampled_from(
    ["type", "dim", "heads", "merge", "linear", "residual", "name", "junk"]), scalars, max_size=3))
MUTATIONS = ("delete", "replace", "rename", "insert")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutations_only_raise_spec_error(tmp_path, data):
    src = Path(data.draw(st.sampled_from(SPEC_FILES), label="spec"))
    tree = _absolute_extends(yaml.safe_load(src.read_text()), src)
    for _ in range(data.draw(st.integers(1, 3), label="n_mutations")):
        paths = [p for p in _paths(tree) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        kind = data.draw(st.sampled_from(MUTATIONS), label="kind")
        parent = tree
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if kind == "delete":
            del parent[last]
        elif kind == "replace":
            parent[last] = data.draw(values, label="value")
        elif kind == "rename" and isinstance(parent, dict):
            new = data.draw(st.sampled_from(["depth", "dims", "mixr", "heads", "type", "blocks", "body", "x", 3]))
            if new not in parent:
                parent[new] = parent.pop(last)
        else:
            target = parent if isinstance(parent, dict) else tree
            target[data.draw(st.sampled_from(["junk", "name", "merge", "override", "params"]))] = \
                data.draw(values, label="junk")
    f = tmp_path / "mutated.yaml"
    f.write_text(yaml.safe_dump(tree, sort_keys=False))
    try:
        spec = load_spec(f)
        build_model(spec, device="meta")
    except SpecError as e:
        assert str(e) and "\n" not in str(e)   # what the CLI prints: control characters escaped


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_text_edits_only_raise_spec_error(tmp_path, data):
    """Edits of the YAML text itself (YAML errors, indentation, duplicated lines, stray characters)."""
    src = Path(data.draw(st.sampled_from(SPEC_FILES), label="spec"))
    text = src.read_text()
    for _ in range(data.draw(st.integers(1, 3), label="n_edits")):
        lines = text.splitlines(keepends=True) or ["\n"]
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        kind = data.draw(st.sampled_from(["drop", "dup", "indent", "dedent", "insert"]), label="kind")
        if kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "indent":
            lines[i] = "  " + lines[i]
        elif kind == "dedent":
            lines[i] = lines[i].lstrip()
        else:
            col = data.draw(st.integers(0, max(0, len(lines[i]) - 1)), label="col")
            junk = data.draw(st.sampled_from([":", "- ", "[", "}", "&a ", "*a", "!!python/none ", "\t", "'", "#",
                                              "$", "{x: 1}", ", ", "null"]), label="junk")
            lines[i] = lines[i][:col] + junk + lines[i][col:]
        text = "".join(lines)
    f = tmp_path / src.name
    if "extends:" in text:  # keep relative extends working from the temporary copy
        for other in src.parent.glob("*.yaml"):
            (tmp_path / other.name).write_text(other.read_text())
    f.write_text(text)
    try:
        build_model(load_spec(f), device="meta")
    except SpecError as e:
        assert e.file and "\n" not in str(e)
