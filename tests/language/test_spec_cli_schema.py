"""`archdsl schema`: JSON on stdout or to a file; the template schema accepts the shipped templates."""
import json

import pytest
import yaml

from archdsl.cli import main
from archdsl.language.templates import BUILTIN_DIR


def test_schema_stdout_and_out(tmp_path, capsys):
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out)
    assert schema["title"] == "archdsl model spec" and "stages" in schema["properties"]
    target = tmp_path / "archdsl-spec.schema.json"
    assert main(["schema", "--out", str(target)]) == 0
    assert json.loads(target.read_text()) == schema
    assert capsys.readouterr().out == ""


def test_schema_out_unwritable(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path / "no" / "dir" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archdsl schema: error: cannot write") and "Traceback" not in err


def test_template_schema_accepts_shipped_templates(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["schema", "--template"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "archdsl block template" and set(schema["properties"]) >= {"block", "params", "body"}
    validator = jsonschema.Draft7Validator(schema)
    files = sorted(BUILTIN_DIR.glob("*.yaml"))
    assert files
    for f in files:
        assert not list(validator.iter_errors(yaml.safe_load(f.read_text()))), f
    assert list(validator.iter_errors({"block": "x", "bdy": []}))
