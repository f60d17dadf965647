"""timm interop through timm itself: shipped specs in timm's registry, a user spec in one call, and
`archdsl import-weights --from timm` giving exactly timm's logits (swin, convnext, vit / deit)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

import archdsl  # noqa: E402
from archdsl.cli import main  # noqa: E402
from archdsl.compiler import build_model  # noqa: E402
from archdsl.convert import convert_timm_state_dict  # noqa: E402
from archdsl.integrations import timm as archdsl_timm  # noqa: E402  (importing it registers the shipped specs)

ROOT = Path(__file__).resolve().parents[2]
TINY = ["stages.depths=[1,1,1,1]", "stages.embed_dim=16", "stages.heads=[1,1,2,2]"]


def test_every_shipped_spec_is_registered_with_the_archdsl_prefix():
    assert archdsl.timm is archdsl_timm  # the alias attribute
    registered = archdsl_timm.SHIPPED
    names = set(timm.list_models("archdsl_*"))
    shipped = sorted((ROOT / "specs").glob("**/*.yaml"))
    assert len(registered) == len(shipped)
    assert {"archdsl_mlla_t", "archdsl_swin_t", "archdsl_la_baseline", "archdsl_vmamba_like_t"} <= names
    assert names >= set(registered)
    assert timm.get_pretrained_cfg("archdsl_mlla_t").input_size == (3, 224, 224)


def test_create_model_maps_timm_keywords_onto_the_spec():
    model = timm.create_model("archdsl_mlla_t", pretrained=False, num_classes=10, drop_path_rate=0.0,
                              overrides=TINY).eval()
    assert model.spec.num_classes == 10 and model.spec.drop_path == 0.0 and model.dims == [16, 32, 64, 128]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.pretrained_cfg["architecture"] == "archdsl_mlla_t"
    with pytest.raises(ValueError, match="no hosted pretrained weights"):
        timm.create_model("archdsl_mlla_t", pretrained=True)
    with pytest.raises(TypeError, match="unexpected global_pool"):
        timm.create_model("archdsl_mlla_t", global_pool="avg")


def test_register_spec_makes_a_user_spec_a_timm_model(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(f"extends: {ROOT / 'specs' / 'swin_t.yaml'}\nname: my_swin\nnum_classes: 7\n")
    assert archdsl.timm.register_spec(spec, "my_tiny_swin", overrides=TINY) == "my_tiny_swin"
    model = timm.create_model("my_tiny_swin").eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert archdsl.timm.register_spec(spec) == "archdsl_my_swin"  # default name from the spec
    with pytest.raises(archdsl.SpecError, match="stages.depths"):
        archdsl.timm.register_spec(spec, "bad", overrides=["stages.depths=oops"])


# (spec, timm name, timm kwargs of a tiny model, the same as --set lines, input size)
_TINY_VIT = (dict(img_size=32, embed_dim=32, depth=2, num_heads=2), ["image_size=32", "dim=32", "depth=2", "heads=2"])
TIMM_ZOO = [
    ("swin_t.yaml", "swin_tiny_patch4_window7_224", dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4)),
     ["stages.embed_dim=32", "stages.depths=[2,2,2,2]", "stages.heads=[1,2,2,4]"], (224, 224)),  # shifted windows
    ("zoo/convnext_t.yaml", "convnext_tiny", dict(dims=(16, 32, 64, 128), depths=(1, 1, 2, 1)),
     ["stages.embed_dim=16", "stages.depths=[1,1,2,1]"], (64, 96)),
    ("zoo/vit_s16.yaml", "vit_small_patch16_224", *_TINY_VIT, (32, 32)),
    ("zoo/deit_s.yaml", "deit_small_patch16_224", *_TINY_VIT, (32, 32)),
]


@pytest.mark.parametrize("spec, name, kwargs, overrides, size", TIMM_ZOO, ids=[c[1] for c in TIMM_ZOO])
def test_import_weights_from_timm_zoo_gives_its_logits(tmp_path, capsys, spec, name, kwargs, overrides, size):
    ref = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    with torch.no_grad():  # every tensor distinct (timm's layer scale 1e-6 would hide a wrong block mapping)
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ckpt, out = tmp_path / "timm.pth", tmp_path / "archdsl.pt"
    torch.save(ref.state_dict(), ckpt)
    sets = [a for o in [*overrides, "num_classes=10"] for a in ("--set", o)]
    rc = main(["import-weights", "--from", "timm", str(ckpt), "--spec", str(ROOT / "specs" / spec), *sets,
               "--out", str(out), "--json"])
    model = build_model(ROOT / "specs" / spec, [*overrides, "num_classes=10"]).eval()
    assert rc == 0 and json.loads(capsys.readouterr().out)["tensors"] == len(model.state_dict())
    model.load_state_dict(torch.load(out, weights_only=True))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = ref(x)
        assert expected.std() > 0.1  # the logits depend on the input, so equality below means something
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec, name, moved", [
    ("swin_t.yaml", "swin_tiny_patch4_window7_224", {"layers.1.downsample.reduction.weight":
                                                     "stages.0.downsample.reduction.weight",
                                                     "layers.3.blocks.1.attn.relative_position_bias_table":
                                                     "stages.3.blocks.1.attn.relative_position_bias_table",
                                                     "norm.weight": "head.norm.weight", "head.fc.bias": "head.fc.bias"}),
    ("zoo/convnext_t.yaml", "convnext_tiny", {"stages.1.downsample.1.weight": "stages.0.downsample.conv.weight",
                                               "stages.3.downsample.0.bias": "stages.2.downsample.norm.bias",
                                               "stages.2.blocks.8.gamma": "stages.2.blocks.8.ls.gamma",
                                               "stem.1.weight": "stem.norm.weight"}),
    ("zoo/vit_s16.yaml", "vit_small_patch16_224", {"pos_embed": "pos_embed.0.pos", "cls_token": "cls_token.token",
                                                   "blocks.11.attn.qkv.weight": "stages.0.blocks.11.attn.qkv.weight",
                                                   "head.weight": "head.fc.weight", "norm.bias": "head.norm.bias"}),
    ("zoo/deit_s.yaml", "deit_small_patch16_224", {"patch_embed.proj.weight": "stem.proj.weight"}),
], ids=["swin_tiny_patch4_window7_224", "convnext_tiny", "vit_small_patch16_224", "deit_small_patch16_224"])
def test_full_size_timm_checkpoints_map_key_for_key(spec, name, moved):
    """Full-size timm models on the meta device (no memory, no forward): every key maps to a model key
    of the same shape, and the model's keys come out in its own order."""
    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False)
        model = build_model(ROOT / "specs" / spec)
    state = ref.state_dict()
    converted = convert_timm_state_dict(state, model)
    recomputed = [k for k in state if k.endswith(("relative_position_index", "attn_mask"))]  # swin's buffers
    assert list(converted) == list(model.state_dict()) and len(converted) == len(state) - len(recomputed)
    for src, dst in moved.items():
        assert converted[dst] is state[src]


def test_a_distilled_deit_checkpoint_names_its_extra_token():
    with torch.device("meta"):
        ref = timm.create_model("deit_small_distilled_patch16_224", pretrained=False)
        model = build_model(ROOT / "specs" / "zoo" / "deit_s.yaml")
    with pytest.raises(archdsl.SpecError) as e:
        convert_timm_state_dict(ref.state_dict(), model)
    assert str(e.value).startswith("timm vit weights do not fit the model: unexpected in the checkpoint: "
                                   "dist_token, head_dist.weight, head_dist.bias; shape mismatch: pos_embed "
                                   "(1, 198, 384) vs model pos_embed.0.pos (1, 197, 384)")


def test_import_weights_from_timm_names_what_does_not_fit(tmp_path, capsys):
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10,
                            embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    ckpt = tmp_path / "swin.pth"
    torch.save(ref.state_dict(), ckpt)
    rc = main(["import-weights", "--from", "timm", str(ckpt), "--spec", str(ROOT / "specs" / "swin_t.yaml"),
               "--set", "num_classes=10", "--out", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "timm swin weights do not fit the model: missing in the checkpoint: stages.0.blocks.1." in err
    assert "shape mismatch: patch_embed.proj.weight (32, 3, 4, 4) vs model stem.proj.weight (96, 3, 4, 4)" in err


def test_features_only_through_timm_create_model():
    model = timm.create_model("archdsl_mlla_t", features_only=True, out_indices=(1, 2, 3), overrides=TINY).eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)]
    assert model.feature_info.channels() == [32, 64, 128] and model.feature_info.reduction() == [8, 16, 32]
    assert model.pretrained_cfg["num_classes"] == 0
