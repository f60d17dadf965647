"""Official detection / segmentation backbone checkpoints: a checkpoint saved (under "state_dict", as
mmdet / mmseg do) by the independent re-implementation of the official backbone structure
(tests/paper/official_mlla.py: OfficialMLLABackbone, per-output norms norm0..norm3, padding of the
image and of odd grids) is converted by ``archdsl import-weights --features-only``; the compiled
backbone then gives the official four feature maps at a non-square size whose grids are odd."""
import json

import torch
from official_mlla import OfficialMLLA, OfficialMLLABackbone, randomize_

from archdsl import build_model
from archdsl.cli import main

SPEC = "specs/mlla_t.yaml"
TINY = ["stages.embed_dim=16", "stages.depths=[1,2,1,1]", "stages.heads=[1,2,2,4]", "image_size=64"]
SETS = [a for o in TINY for a in ("--set", o)]
KW = dict(embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4))
# 78x110: the stem pads to 80x112; grids 20x28, 10x14, 5x7 (odd: padded before the merge), 3x4
X = torch.randn(2, 3, 78, 110)


def _backbone(tmp_path, ckpt, capsys):
    out = tmp_path / "backbone.pt"
    rc = main(["import-weights", "--from", "mlla", str(ckpt), "--spec", SPEC, *SETS, "--features-only",
               "--out", str(out), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    model = build_model(SPEC, TINY + ["features.norm=true"], features_only=True).eval()
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    return model, info


def _assert_same_maps(model, ref):
    with torch.no_grad():
        ours, theirs = model(X), ref(X)
    assert [tuple(t.shape) for t in theirs] == [(2, 16, 20, 28), (2, 32, 10, 14), (2, 64, 5, 7), (2, 128, 3, 4)]
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
    assert model.feature_info.reduction() == [4, 8, 16, 32] and model.feature_info.channels() == [16, 32, 64, 128]
    for a, b in zip(ours, theirs):
        assert b.abs().max() > 0.1  # not a degenerate comparison
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_detection_checkpoint_gives_the_official_feature_maps(tmp_path, capsys):
    torch.manual_seed(0)
    ref = randomize_(OfficialMLLABackbone(train_size=64, **KW)).eval()
    ckpt = tmp_path / "mlla_det.pth"
    torch.save({"state_dict": ref.state_dict(), "meta": {"epoch": 12}}, ckpt)
    model, info = _backbone(tmp_path, ckpt, capsys)
    assert info["features_only"] and info["initialised"] == [] and info["dropped_classifier"] == []
    assert info["dropped_task"] == 0
    assert info["dropped"] == 5  # the five blocks' rope.rotations buffers
    assert info["params"] == sum(p.numel() for p in ref.parameters())
    _assert_same_maps(model, ref)


def test_whole_detector_checkpoint_converts_its_backbone(tmp_path, capsys):
    torch.manual_seed(3)
    ref = randomize_(OfficialMLLABackbone(train_size=64, **KW)).eval()
    sd = {f"backbone.{k}": v for k, v in ref.state_dict().items()}
    sd.update({"neck.lateral_convs.0.conv.weight": torch.zeros(8, 16, 1, 1), "rpn_head.rpn_cls.bias": torch.zeros(3)})
    ckpt = tmp_path / "mask_rcnn_mlla_t.pth"
    torch.save({"state_dict": sd, "meta": {}}, ckpt)
    model, info = _backbone(tmp_path, ckpt, capsys)
    assert info["dropped_task"] == 2 and info["dropped"] == 5 and info["initialised"] == []
    _assert_same_maps(model, ref)


def test_classification_checkpoint_loads_into_a_backbone_norms_initialised(tmp_path, capsys):
    torch.manual_seed(1)
    cls = randomize_(OfficialMLLA(img_size=64, num_classes=10, **KW)).eval()
    ckpt = tmp_path / "mlla_cls.pth"
    torch.save({"model": cls.state_dict()}, ckpt)
    model, info = _backbone(tmp_path, ckpt, capsys)
    assert info["dropped_classifier"] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    assert info["initialised"] == [f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]
    ref = OfficialMLLABackbone(train_size=64, **KW).eval()  # the official code's non-strict load
    missing, unexpected = ref.load_state_dict(cls.state_dict(), strict=False)
    assert sorted(missing) == sorted(info["initialised"]) and unexpected == info["dropped_classifier"]
    _assert_same_maps(model, ref)
    assert main(["import-weights", "--from", "mlla", str(ckpt), "--spec", SPEC, *SETS, "--features-only",
                 "--out", str(tmp_path / "x.pt")]) == 0
    err = capsys.readouterr().err
    assert "backbone: 4 classifier tensors dropped (norm.weight, norm.bias, head.weight, head.bias); " \
           "8 output-norm tensors initialised (norm0.weight," in err


def test_detection_checkpoint_into_a_classifier_is_refused_with_a_hint(tmp_path, capsys):
    ref = OfficialMLLABackbone(train_size=64, **KW)
    ckpt = tmp_path / "mlla_det.pth"
    torch.save({"state_dict": ref.state_dict()}, ckpt)
    rc = main(["import-weights", "--from", "mlla", str(ckpt), "--spec", SPEC, *SETS, "--out", str(tmp_path / "o.pt")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected in the checkpoint: norm0.weight" in err
    assert "missing in the checkpoint: head.norm.weight" in err
    assert err.rstrip().endswith("as import-weights --features-only builds)")
