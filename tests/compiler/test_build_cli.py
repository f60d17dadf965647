"""``archdsl build``: --json fields, table, --image-size, --resolved round trip, --weights round trip,
user errors (exit 2, one line, no traceback)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from archdsl.analysis.summary import count_macs, count_params
from archdsl.cli import main
from archdsl.cli.build import load_weights
from archdsl.compiler import build_model

HERE = Path(__file__).parent
TINY = str(HERE / "specs" / "tiny.yaml")
CHILD = str(HERE / "specs" / "tiny_child.yaml")
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "export"))
from export_helpers import IDS as SHIPPED_IDS  # noqa: E402  (every shipped spec, and how to make it tiny)
from export_helpers import SPECS as SHIPPED  # noqa: E402
from export_helpers import tiny_overrides  # noqa: E402


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_build_json_fields(capsys):
    rc, out, err = run_cli(capsys, "build", TINY, "--json")
    assert rc == 0
    info = json.loads(out)
    m = build_model(TINY)
    assert info["name"] == "tiny" and info["layout"] == "hierarchical"
    assert info["params"] == count_params(m) and isinstance(info["params"], int)
    assert info["macs"] == count_macs(m, 32) and isinstance(info["macs"], int)
    assert info["image_size"] == 32 and info["input_shape"] == [1, 3, 32, 32] and info["output_shape"] == [1, 10]
    assert [r["name"] for r in info["stages"]] == ["stem", "stage0", "downsample0", "stage1", "head"]
    rc, out, _ = run_cli(capsys, "build", TINY, "--json", "--image-size", "64", "--batch-size", "2",
                         "--set", "num_classes=7")
    info2 = json.loads(out)
    assert info2["params"] == info["params"] - 3 * (32 + 1)
    assert info2["image_size"] == 64 and info2["input_shape"] == [2, 3, 64, 64] and info2["output_shape"] == [2, 7]
    assert info2["macs"] > 3 * info["macs"]


def test_build_table(capsys):
    rc, out, _ = run_cli(capsys, "build", CHILD)
    assert rc == 0
    assert "tiny_child" in out and "total" in out and "downsample0" in out
    assert f"{count_params(build_model(CHILD)):,}" in out


def test_resolved_round_trip(capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "build", CHILD, "--resolved", "--set", "drop_path=0.2")
    assert rc == 0 and "\nextends:" not in out and "softmax_attention" in out
    res = tmp_path / "resolved.yaml"
    res.write_text(out)
    torch.manual_seed(7)
    a = build_model(CHILD, ["drop_path=0.2"])
    torch.manual_seed(7)
    b = build_model(str(res))
    assert count_params(a) == count_params(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the resolved text resolves to itself
    rc, out2, _ = run_cli(capsys, "build", str(res), "--resolved")
    assert out2.split("\n", 1)[1] == out.split("\n", 1)[1]


def test_weights_round_trip(capsys, tmp_path):
    torch.manual_seed(5)
    src = build_model(TINY)
    f = tmp_path / "w.pt"
    torch.save({"model": src.state_dict()}, f)
    rc, out, err = run_cli(capsys, "build", TINY, "--weights", str(f), "--json", "--seed", "9")
    assert rc == 0, err
    dst = build_model(TINY)
    load_weights(dst, str(f))
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    bad = dict(src.state_dict())
    bad.pop("head.fc.bias")
    bad["extra.weight"] = torch.zeros(1)
    bad["head.fc.weight"] = torch.zeros(3, 32)
    torch.save(bad, f)
    rc, out, err = run_cli(capsys, "build", TINY, "--weights", str(f))
    assert rc == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "1 missing key(s): head.fc.bias" in err and "1 unexpected key(s): extra.weight" in err
    assert "1 mis-shaped key(s): head.fc.weight [3, 32] vs model [10, 32]" in err
    assert err.startswith(f"archdsl build: error: {f}: the weights do not fit this model: ")
    f.write_bytes(b"not a checkpoint")
    rc, out, err = run_cli(capsys, "build", TINY, "--weights", str(f))
    assert rc == 2 and "is it a torch.save file?" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,needle", [
    (["build", "no/such/spec.yaml"], "file not found"),
    (["build", TINY, "--image-size", "4"], "input 4x4 is too small for this model"),
    (["build", TINY, "--weights", "no/such.pt"], "weights file not found: no/such.pt"),
    (["build", TINY, "--set", "stages.heads=[1,3]"], "stages.heads.1: dim 32 is not divisible by heads 3"),
    (["build", TINY, "--set", "mixer.feature_map=elu"], "error building 'linear_attention' at mixer"),
])
def test_user_errors_exit_2_one_line(capsys, argv, needle):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_isotropic_spec_by_hand(capsys):
    vit = str(HERE / "specs" / "tiny_vit.yaml")
    rc, out, _ = run_cli(capsys, "build", vit, "--json", "--image-size", "48")
    info = json.loads(out)
    stem, ape, head = 3 * 24 * 64 + 24, 16 * 24, 24 * 4 + 4             # patch 8 conv; APE grid 4x4 at 32
    block = 2 * 24 + (24 * 72 + 72) + (24 * 24 + 24) + 2 * 24 + (24 * 48 + 48) + (48 * 24 + 24)
    assert info["params"] == stem + ape + 2 * block + head == 14860
    assert [r["name"] for r in info["stages"]] == ["stem", "pos_embed", "stage0", "head"]
    assert info["stages"][2]["output_shape"] == [1, 36, 24] and info["output_shape"] == [1, 4]
    rc, out, _ = run_cli(capsys, "build", vit)
    assert rc == 0 and "14,860" in out and "K" in out


@pytest.mark.parametrize("path", SHIPPED, ids=SHIPPED_IDS)
def test_build_figures_from_the_meta_device_equal_real_tensors(capsys, path):
    """`build` counts on the meta device (nothing initialised or run): every shipped spec (tiny)
    gets the params, MACs, per-part rows and output shapes that real tensors give."""
    from archdsl.analysis.summary import summarize

    sets = [a for o in tiny_overrides(path) for a in ("--set", o)]
    rc, out, err = run_cli(capsys, "build", str(path), "--json", "--image-size", "64", "--batch-size", "3", *sets)
    assert rc == 0, err
    info = json.loads(out)
    torch.manual_seed(0)
    real = summarize(build_model(path, tiny_overrides(path)).eval(), 64)
    assert (info["params"], info["macs"]) == (real["params"], real["macs"])
    assert [(r["name"], r["output_shape"], r["params"], r["macs"]) for r in info["stages"]] == \
        [(r["name"], r["output_shape"], r["params"], r["macs"]) for r in real["rows"]]
    assert info["output_shape"] == [3] + real["output_shape"][1:]


def test_build_features_only_gives_one_shape_per_output_at_the_batch(capsys):
    rc, out, err = run_cli(capsys, "build", str(ROOT / "specs" / "mlla_t.yaml"), "--json", "--features-only",
                           "--image-size", "64", "--batch-size", "2", "--set", "stages.embed_dim=16",
                           "--set", "stages.depths=[1,1,1,1]", "--set", "stages.heads=[1,1,1,1]")
    assert rc == 0, err
    shapes = json.loads(out)["output_shape"]
    real = build_model(ROOT / "specs" / "mlla_t.yaml", ["stages.embed_dim=16", "stages.depths=[1,1,1,1]",
                                                       "stages.heads=[1,1,1,1]"], features_only=True).eval()
    with torch.no_grad():
        assert shapes == [list(f.shape) for f in real(torch.zeros(2, 3, 64, 64))]
