"""timm's model interface on compiled models: features_only backbones, feature_info, forward_intermediates,
forward_head, reset_classifier, pretrained_cfg, the spec's features: section, pruning."""
import json

import pytest
import torch
from torch import nn

from archdsl import build_model
from archdsl.cli import main
from archdsl.errors import SpecError
from archdsl.layouts.features import FeatureInfo, default_out_indices, take_indices

SPEC = "specs/mlla_t.yaml"
TINY = ["stages.embed_dim=16", "stages.depths=[1,1,1,1]", "stages.heads=[1,2,2,4]", "num_classes=10"]
ISO = {"name": "iso", "layout": "isotropic", "image_size": 32, "num_classes": 5, "patch_size": 4, "dim": 16,
       "depth": 6, "heads": 2, "block": "transformer", "mixer": {"type": "softmax_attention"}}
X = torch.randn(1, 3, 38, 45)  # not multiples of 32: grids 10x12, 5x6, 3x3, 2x2


def _tiny(*extra, **kw):
    return build_model(SPEC, TINY + list(extra), **kw).eval()


def test_features_only_maps_and_feature_info():
    m = _tiny(features_only=True, out_indices=(1, 3))
    assert m.head is None and m.num_classes == 0 and not any(k.startswith("head.") for k in m.state_dict())
    with torch.no_grad():
        feats = m(X)
    assert [tuple(f.shape) for f in feats] == [(1, 32, 5, 6), (1, 128, 2, 2)]
    info = m.feature_info
    assert isinstance(info, FeatureInfo) and isinstance(info, list)
    assert info.channels() == [32, 128] and info.reduction() == [8, 32] and info.out_indices == (1, 3)
    assert info.module_name() == ["stages.1.blocks.0", "stages.3.blocks.0"]
    assert info.channels(1) == 128 and info.get_dicts(keys=["num_chs"]) == [{"num_chs": 32}, {"num_chs": 128}]
    assert info[0] == {"num_chs": 32, "reduction": 8, "module": "stages.1.blocks.0", "index": 1}


def test_forward_intermediates_equals_features_only_and_classifier_trunk():
    clf = _tiny()
    feat = _tiny(features_only=True)
    missing, unexpected = feat.load_state_dict(clf.state_dict(), strict=False)
    assert missing == [] and sorted({k.split(".")[0] for k in unexpected}) == ["head"]
    with torch.no_grad():
        final, inter = clf.forward_intermediates(X)
        only = clf.forward_intermediates(X, indices=2, intermediates_only=True)  # the last two
        maps = feat(X)
        nhwc = clf.forward_intermediates(X, indices=[-1], output_fmt="NHWC", intermediates_only=True)
    assert len(maps) == len(inter) == 4
    for a, b in zip(maps, inter):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(only[0], inter[2], rtol=0, atol=0)
    torch.testing.assert_close(final, clf.forward_features(X), rtol=0, atol=0)
    torch.testing.assert_close(nhwc[0], inter[3].permute(0, 2, 3, 1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="out of range"):
        clf.forward_intermediates(X, indices=[4])
    with pytest.raises(ValueError, match="output_fmt"):
        clf.forward_intermediates(X, output_fmt="NLC")


def test_norm_applies_per_output_norms_and_head_norm_last():
    m = _tiny("features.norm=true", features_only=False)
    assert not m.features_only and [k for k in m._modules if k.startswith("norm")] == [f"norm{i}" for i in range(4)]
    with torch.no_grad():
        for i in range(4):
            getattr(m, f"norm{i}").weight.uniform_(0.5, 1.5)
        raw = m.forward_intermediates(X, intermediates_only=True)
        normed = m.forward_intermediates(X, norm=True, intermediates_only=True)
    for i, (r, n) in enumerate(zip(raw, normed)):
        ln = getattr(m, f"norm{i}")
        ref = ln(r.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(n, ref, rtol=0, atol=1e-6)
    plain = _tiny()  # no per-output norms: norm=True normalises the last output with the head's norm (timm)
    with torch.no_grad():
        plain.head.norm.weight.uniform_(0.5, 1.5)
        r = plain.forward_intermediates(X, indices=[2, 3], intermediates_only=True)
        n = plain.forward_intermediates(X, indices=[2, 3], norm=True, intermediates_only=True)
    torch.testing.assert_close(n[0], r[0], rtol=0, atol=0)
    torch.testing.assert_close(n[1], plain.head.norm(r[1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_spec_features_section_builds_a_backbone_and_errors_are_located(tmp_path):
    m = _tiny("features.out_indices=[1,2,3]", "features.norm=true")
    assert m.features_only and m.out_indices == (1, 2, 3)
    assert sorted(k for k in m.state_dict() if k.startswith("norm")) == [
        "norm1.bias", "norm1.weight", "norm2.bias", "norm2.weight", "norm3.bias", "norm3.weight"]
    assert m.feature_info.module_name() == ["norm1", "norm2", "norm3"]
    assert _tiny("features.out_indices=[-2,-1]").out_indices == (2, 3)
    assert _tiny("features.out_indices=2", features_only=False).features_only is False
    spec = tmp_path / "bad.yaml"
    spec.write_text("extends: %s\nfeatures:\n  out_indices: [0, 4]\n" % (__import__("os").path.abspath(SPEC)))
    with pytest.raises(SpecError) as e:
        build_model(spec, TINY)
    assert str(e.value).startswith(f"{spec}:3:3: features.out_indices: feature index 4 is out of range")
    with pytest.raises(SpecError, match="features.norm"):
        build_model(SPEC, TINY + ["features.norm=3"])
    with pytest.raises(SpecError, match="increasing without repeats"):
        build_model(SPEC, TINY, features_only=True, out_indices=[2, 1])
    with pytest.raises(SpecError, match="out_indices needs features_only"):
        build_model(SPEC, TINY, out_indices=[2])


def test_head_api_reset_classifier_and_pretrained_cfg():
    m = _tiny()
    with torch.no_grad():
        f = m.forward_features(X)
        assert f.shape == (1, 128, 2, 2)
        torch.testing.assert_close(m.forward_head(f), m(X), rtol=0, atol=0)
        pooled = m.forward_head(f, pre_logits=True)
        assert pooled.shape == (1, m.num_features) and m.num_features == 128
        torch.testing.assert_close(m.head.fc(pooled), m(X), rtol=0, atol=0)
    m.reset_classifier(7)
    assert m(X).shape == (1, 7) and m.num_classes == 7 and m.get_classifier().out_features == 7
    m.reset_classifier(0, global_pool="avg")
    assert m(X).shape == (1, 128) and isinstance(m.get_classifier(), nn.Identity)
    with pytest.raises(ValueError, match="global_pool must be None or 'avg'"):
        m.reset_classifier(3, global_pool="max")
    cfg = m.pretrained_cfg
    assert cfg["architecture"] == "mlla_t" and cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 0
    assert cfg["first_conv"] == "stem.conv1.conv" and cfg["pool_size"] == (7, 7) and m.default_cfg == cfg
    m.default_cfg = {"architecture": "x"}
    assert m.pretrained_cfg == {"architecture": "x"}
    assert _tiny().pretrained_cfg["classifier"] == "head.fc"


def test_isotropic_defaults_one_reduction_and_prune():
    m = build_model(ISO, features_only=True).eval()
    assert m.out_indices == (0, 2, 3, 5) == default_out_indices("isotropic", 6)
    assert m.feature_info.reduction() == [4] * 4 and m.feature_info.channels() == [16] * 4
    assert m.feature_info.module_name() == [f"stages.0.blocks.{i}" for i in (0, 2, 3, 5)]
    with torch.no_grad():
        assert [tuple(f.shape) for f in m(torch.randn(1, 3, 30, 41))] == [(1, 16, 8, 11)] * 4
    clf = build_model(ISO).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        full = clf.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        assert clf.prune_intermediate_layers([1, 2]) == [1, 2]
        pruned = clf.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    assert len(clf.stages[0].blocks) == 3 and clf.head is None
    torch.testing.assert_close(pruned[1], full[1], rtol=0, atol=0)


def test_prune_hierarchical_keeps_weights():
    m = _tiny("features.norm=true", features_only=True)
    assert m.prune_intermediate_layers((0, 1)) == [0, 1]
    assert len(m.stages) == 2 and m.stages[1].downsample is None and m.num_features == 32 and m.reduction == 8
    assert m.out_indices == (0, 1) and "norm2" not in m._modules and "norm1" in m._modules
    with torch.no_grad():
        assert [tuple(f.shape) for f in m(X)] == [(1, 16, 10, 12), (1, 32, 5, 6)]


def test_take_indices_like_timm():
    assert take_indices(4) == ([0, 1, 2, 3], 3)
    assert take_indices(4, 2) == ([2, 3], 3)
    assert take_indices(4, [0, -1]) == ([0, 3], 3)
    for bad in (0, 5, [4], [-5], [], [1, 1], True):
        with pytest.raises(ValueError):
            take_indices(4, bad)
    assert default_out_indices("isotropic", 2) == (0, 1) and default_out_indices("isotropic", 1) == (0,)


def test_build_cli_features_only_reports_a_list_of_maps(capsys):
    sets = [a for o in TINY + ["features.norm=true"] for a in ("--set", o)]
    assert main(["build", SPEC, *sets, "--features-only", "--image-size", "70", "--batch-size", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_shape"] == [[2, 16, 18, 18], [2, 32, 9, 9], [2, 64, 5, 5], [2, 128, 3, 3]]
    assert info["stages"][-1]["name"] == "norms" and info["stages"][-1]["params"] == 2 * (16 + 32 + 64 + 128)
    assert info["params"] == sum(r["params"] for r in info["stages"])
