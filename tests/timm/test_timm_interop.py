"""timm interop through timm itself: shipped specs in timm's registry, a user spec in one call, and
`archdsl import-weights --from timm` giving exactly timm's logits."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

import archdsl  # noqa: E402
from archdsl.cli import main  # noqa: E402
from archdsl.compiler import build_model  # noqa: E402
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


def test_import_weights_from_timm_swin_t_gives_its_logits(tmp_path, capsys):
    torch.manual_seed(1)
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10).eval()
    ckpt, out = tmp_path / "swin.pth", tmp_path / "swin.archdsl.pt"
    torch.save(ref.state_dict(), ckpt)
    rc = main(["import-weights", "--from", "timm", str(ckpt), "--spec", str(ROOT / "specs" / "swin_t.yaml"),
               "--set", "num_classes=10", "--out", str(out), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["tensors"] == 173
    model = build_model(ROOT / "specs" / "swin_t.yaml", ["num_classes=10"]).eval()
    model.load_state_dict(torch.load(out, weights_only=True))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-4, rtol=0)


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
