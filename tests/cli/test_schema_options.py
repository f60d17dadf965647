"""`archdsl schema` knows the components: enums of registered names per kind, each component's options
from its constructor (check-jsonschema rejects an unknown mixer and a misspelled option), the other
layout's fields forbidden; `archdsl list --options KIND NAME` prints a component's options."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archdsl.cli import main

pytest.importorskip("check_jsonschema")  # a test dependency (pyproject [test])
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "archdsl-spec.schema.json"
    assert main(["schema", "--out", str(path)]) == 0
    return path


def _check(schema_file, tmp_path, text):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema_file), str(spec)],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


BASE = "block: transformer\nstages: {embed_dim: 8, depths: [1], heads: 1}\n"


def test_schema_enums_and_options(schema_file):
    schema = json.loads(schema_file.read_text())
    names = schema["properties"]["mixer"]["anyOf"][0]["enum"]
    assert {"linear_attention", "softmax_attention", "selective_ssm"} <= set(names)
    typed = schema["properties"]["mixer"]["anyOf"][1]["allOf"]
    la = next(c["then"] for c in typed if c["if"]["properties"]["type"]["const"] == "linear_attention")
    assert la["additionalProperties"] is False
    assert la["properties"]["normalize"] == {"type": "boolean", "default": True}
    assert la["properties"]["key_dim"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}


def test_check_jsonschema_accepts_every_shipped_spec_and_rejects_mistakes(schema_file, tmp_path):
    good = [str(p) for p in sorted((ROOT / "specs").rglob("*.yaml"))]
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema_file), *good],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _check(schema_file, tmp_path, BASE + "mixer: {type: linear_attention, normalize: false}\n")[0] == 0
    rc, out = _check(schema_file, tmp_path, BASE + "mixer: {type: linear_atention}\n")
    assert rc == 1 and "$.mixer" in out
    rc, out = _check(schema_file, tmp_path, BASE + "mixer: {type: linear_attention, normalise: true}\n")
    assert rc == 1 and "$.mixer" in out
    rc, out = _check(schema_file, tmp_path, BASE + "head: {type: norm_pool_linear, global_pol: token}\n")
    assert rc == 1 and "$.head" in out
    rc, out = _check(schema_file, tmp_path, "layout: isotropic\nblock: transformer\ndim: 8\ndepth: 1\n"
                                            "downsample: patch_merging\n")
    assert rc == 1 and "does not allow 'patch_merging'" in out
    rc, out = _check(schema_file, tmp_path, BASE + "dim: 8\n")  # hierarchical by default
    assert rc == 1 and "does not allow 8" in out
    assert _check(schema_file, tmp_path, "extends: iso.yaml\ndim: 16\n")[0] == 0  # the base may be isotropic
    # options without `type` patch the component a base spec names (extends): allowed
    assert _check(schema_file, tmp_path, "extends: base.yaml\nmixer: {input_gate: true}\n")[0] == 0


def test_list_options(capsys):
    assert main(["list", "head", "--options", "norm_pool_linear"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "head norm_pool_linear:"
    assert "  global_pool: string (default 'avg')" in out and "  norm_eps: integer | number | null" not in out
    assert main(["list", "mixer", "--options", "linear_attention", "--json"]) == 0
    opts = {o["name"]: o for o in json.loads(capsys.readouterr().out)["options"]}
    assert opts["heads"]["default"] == "$heads" and opts["forget_gate"]["default"] is False
    assert main(["list", "block", "--options", "convnext"]) == 0
    assert "  ls_init: number (default 1e-06)" in capsys.readouterr().out
    assert main(["list", "head", "--options", "nope"]) == 2
    assert "unknown head 'nope'" in capsys.readouterr().err


def test_docs_components_md_is_current(capsys):
    assert main(["list", "--markdown"]) == 0
    text = capsys.readouterr().out
    assert (ROOT / "docs" / "components.md").read_text() == text  # regenerate: archdsl list --markdown
    for name in ("conv_stem", "conv_downsample", "pool_norm_mlp", "layer_scale", "slice", "convnext"):
        assert f"| `{name}` |" in text
