"""Official-weight import: a checkpoint saved in the official MLLA layout by the independent
re-implementation (tests/paper/official_mlla.py, random weights, wrapped under "model") is converted
through ``archdsl import-weights``; the compiled spec then gives the official logits at the
checkpoint's size and at another size (RoPE recomputed; the reference rebuilds its buffers)."""
import json

import pytest
import torch
from official_mlla import OfficialMLLA, randomize_

from archdsl import build_model
from archdsl.cli import main
from archdsl.convert.mlla import convert_mlla_state_dict, load_checkpoint, save_state_dict
from archdsl.errors import SpecError

SPEC = "specs/mlla_t.yaml"
TINY = ["stages.embed_dim=16", "stages.depths=[1,1,1,1]", "stages.heads=[1,2,2,4]", "num_classes=10",
        "image_size=64"]
SETS = [a for o in TINY for a in ("--set", o)]


def _official(depths=(1, 1, 1, 1)):
    torch.manual_seed(0)
    return randomize_(OfficialMLLA(img_size=64, num_classes=10, embed_dim=16, depths=depths,
                                   num_heads=(1, 2, 2, 4))).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    ref = _official()
    path = tmp_path_factory.mktemp("ckpt") / "mlla_tiny.pth"
    torch.save({"model": ref.state_dict(), "epoch": 300}, path)
    return ref, str(path)


def test_import_cli_round_trip_same_logits_two_sizes(ckpt, tmp_path, capsys):
    ref, path = ckpt
    out = tmp_path / "sub" / "converted.pt"
    rc = main(["import-weights", "--from", "mlla", path, "--spec", SPEC, *SETS, "--out", str(out), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    n_rope = sum(k.endswith("rope.rotations") for k in ref.state_dict())
    assert n_rope == 4 and info["dropped"] == n_rope
    assert info["params"] == sum(p.numel() for p in ref.parameters())
    assert not list(out.parent.glob(".tmp-*"))  # atomic write left no temporary file
    model = build_model(SPEC, TINY).eval()
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-4)
        ref96 = _official()
        ref96.load_state_dict(ref.state_dict())
        ref96.set_resolution(96)
        x = torch.randn(2, 3, 96, 96)
        y = model(x)
        assert y.abs().max() > 0.1  # not a degenerate comparison
        torch.testing.assert_close(y, ref96(x), rtol=0, atol=1e-4)


def test_build_cli_loads_converted_weights(ckpt, tmp_path, capsys):
    _, path = ckpt
    out = tmp_path / "converted.pt"
    assert main(["import-weights", "--from", "mlla", path, "--spec", SPEC, *SETS, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["build", SPEC, *SETS, "--weights", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"] == str(out) and info["output_shape"] == [1, 10]
    # the same file does not fit a deeper model: strict loading refuses it (exit 2, one line)
    deeper = [a if a != "stages.depths=[1,1,1,1]" else "stages.depths=[1,1,2,1]" for a in SETS]
    assert main(["build", SPEC, *deeper, "--weights", str(out)]) == 2
    assert "missing key(s): stages.2.blocks.1." in capsys.readouterr().err


def _convert(sd):
    return convert_mlla_state_dict(sd, build_model(SPEC, TINY))


def test_missing_key_error():
    sd = _official().state_dict()
    del sd["layers.1.blocks.0.attn.qk.weight"]
    with pytest.raises(SpecError, match=r"missing in the checkpoint: stages\.1\.blocks\.0\.attn\.qk\.weight"):
        _convert(sd)


def test_unexpected_key_error():
    sd = _official().state_dict()
    sd["layers.0.blocks.0.attn.v.weight"] = torch.zeros(16, 16)
    sd["absolute_pos_embed"] = torch.zeros(1, 256, 16)
    with pytest.raises(SpecError, match=r"unexpected in the checkpoint: layers\.0\.blocks\.0\.attn\.v\.weight, "
                                        r"absolute_pos_embed"):
        _convert(sd)


def test_wrong_shape_error():
    sd = _official().state_dict()
    sd["head.weight"] = torch.zeros(1000, 128)
    sd["head.bias"] = torch.zeros(1000)
    with pytest.raises(SpecError, match=r"shape mismatch: head\.weight \(1000, 128\) vs model head\.fc\.weight "
                                        r"\(10, 128\), head\.bias"):
        _convert(sd)


def test_depth_mismatch_names_the_fix():
    sd = _official(depths=(1, 1, 2, 1)).state_dict()
    with pytest.raises(SpecError, match=r"the checkpoint has 5 MLLA blocks \(depths \[1, 1, 2, 1\]\) but the model "
                                        r"has 4; set stages.depths to match \(e.g. --set stages.depths=\[1,1,2,1\]\)"):
        _convert(sd)


def test_cli_errors_exit_2(ckpt, tmp_path, capsys):
    _, path = ckpt
    out = tmp_path / "x.pt"
    wider = [a if a != "stages.embed_dim=16" else "stages.embed_dim=32" for a in SETS]
    rc = main(["import-weights", "--from", "mlla", path, "--spec", SPEC, *wider, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "\n" not in err.strip()
    assert err.startswith("archdsl import-weights: error: official MLLA weights do not fit the model: shape "
                          "mismatch: patch_embed.conv1.conv.weight (8, 3, 3, 3) vs model stem.conv1.conv.weight "
                          "(16, 3, 3, 3), ")
    assert not out.exists()
    assert main(["import-weights", "--from", "mlla", str(tmp_path / "nope.pth"), "--spec", SPEC,
                 "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"a": 1}}, bad)
    assert main(["import-weights", "--from", "mlla", str(bad), "--spec", SPEC, "--out", str(out)]) == 2
    assert "does not hold a state dict" in capsys.readouterr().err


def test_load_checkpoint_unwraps_and_save_is_atomic(tmp_path):
    sd = {"module.a": torch.ones(2)}
    p = tmp_path / "c.pt"
    torch.save({"state_dict": sd}, p)
    assert list(load_checkpoint(str(p))) == ["a"]
    q = tmp_path / "o.pt"
    save_state_dict({"w": torch.arange(3)}, str(q))
    assert torch.equal(torch.load(q, weights_only=True)["w"], torch.arange(3))
    assert [f.name for f in tmp_path.iterdir()] and not list(tmp_path.glob(".tmp-*"))
