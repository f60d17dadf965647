"""dump_resolved round trip: the standalone YAML rebuilds the same model (params and weights)."""

import pytest
import torch
from spec_helpers import FIXTURES, TINY, write

from archdsl.compiler import build_model
from archdsl.language import dump_resolved, load_spec, spec_hash

REPO_SPECS = FIXTURES.parent.parent.parent / "specs"


def _weights(spec):
    torch.manual_seed(0)
    return build_model(spec).state_dict()


def _roundtrip(spec, tmp_path):
    out = tmp_path / "elsewhere" / "resolved.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = dump_resolved(spec)
    out.write_text(text)
    assert "\nextends:" not in text
    again = load_spec(out)
    return text, again


@pytest.mark.parametrize("name,overrides", [("tiny", []), ("tiny_inline", ["stages.depths=[2, 1]"]),
                                            ("tiny_iso", ["+mixer.normalize=false"])])
def test_resolved_rebuilds_same_weights(tmp_path, name, overrides):
    spec = load_spec(FIXTURES / f"{name}.yaml", overrides)
    text, again = _roundtrip(spec, tmp_path)
    a, b = _weights(spec), _weights(again)
    assert list(a) == list(b)
    assert sum(v.numel() for v in a.values()) == sum(v.numel() for v in b.values())
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert spec_hash(spec) == spec_hash(again)
    assert dump_resolved(again).split("\n", 1)[1] == text.split("\n", 1)[1]  # idempotent (header aside)


def test_template_file_is_inlined(tmp_path):
    write(tmp_path, "lib/mine.yaml", """
        block: mine
        params: {ratio: 2}
        body:
          - residual: [{norm: layernorm}, {mlp: {ratio: $ratio}}, drop_path]
          - residual: [{norm: layernorm}, {mixer: $mixer}]
        """)
    spec = load_spec(write(tmp_path, "s.yaml", TINY.replace("block: {type: mlla, mlp_ratio: 2.0}",
                                                              "block: {type: lib/mine.yaml, ratio: 3}")))
    text, again = _roundtrip(spec, tmp_path)
    assert again.block == {"type": "mine", "ratio": 3} and "mine" in again.blocks
    a, b = _weights(spec), _weights(again)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_builtin_template_is_inlined_and_mlla_t_param_count(tmp_path):
    spec = load_spec(REPO_SPECS / "mlla_t.yaml")
    text, again = _roundtrip(spec, tmp_path)
    assert "mlla" in again.blocks and again.blocks["mlla"].body == spec_template_body()
    n = lambda s: sum(p.numel() for p in build_model(s, device="meta").parameters())
    assert n(spec) == n(again) == 24_392_200


def spec_template_body():
    import yaml

    from archdsl.language.templates import BUILTIN_DIR

    return yaml.safe_load((BUILTIN_DIR / "mlla.yaml").read_text())["body"]


def test_hash_changes_with_architecture_not_name(tmp_path):
    p = write(tmp_path, "t.yaml", TINY)
    h = spec_hash(load_spec(p))
    assert len(h) == 16 and h == spec_hash(load_spec(p, ["name=other", "meta={note: x}"]))
    assert h != spec_hash(load_spec(p, ["stages.depths.0=2"]))
    assert h != spec_hash(load_spec(p, ["block.mlp_ratio=3.0"]))


def test_cli_build_resolved_round_trip(tmp_path, capsys):
    import json

    from archdsl.cli import main

    assert main(["build", str(FIXTURES / "tiny_inline.yaml"), "--set", "drop_path=0.05", "--resolved"]) == 0
    text = capsys.readouterr().out
    out = write(tmp_path, "resolved.yaml", text)
    assert main(["build", str(FIXTURES / "tiny_inline.yaml"), "--set", "drop_path=0.05", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["build", str(out), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["params"] == b["params"] and a["macs"] == b["macs"] and a["output_shape"] == b["output_shape"]
