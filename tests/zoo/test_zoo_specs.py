"""specs/zoo: every spec has exactly the official parameter count written in its ``meta:`` (counted on
the meta device), the timm models have exactly timm's count (timm.create_model, pretrained=False, on
the meta device), and tiny versions of them compute what timm computes with the same weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archdsl.analysis.summary import count_params
from archdsl.compiler import build_model
from archdsl.language import load_spec

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"
SPECS = sorted(ZOO.glob("*.yaml"))
timm = pytest.importorskip("timm")  # a test dependency (pyproject [test]); skipped only without it


def _official(path: Path) -> dict:
    return load_spec(str(path)).meta["official"]


def test_the_zoo_has_the_models_of_the_issue():
    names = {p.stem for p in SPECS}
    assert {"convnext_t", "vit_s16", "deit_s", "mambaout_t"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_exact_official_parameter_count(path):
    model = build_model(str(path), device="meta")
    assert count_params(model) == _official(path)["params"]


@pytest.mark.parametrize("path", [p for p in SPECS if "timm" in _official(p)], ids=lambda p: p.stem)
def test_timm_count(path):
    official = _official(path)
    with torch.device("meta"):
        ref = timm.create_model(official["timm"], pretrained=False)
    assert count_params(build_model(str(path), device="meta")) == count_params(ref) == official["params"]


# ---------------------------------------------------------------- same function as timm (tiny sizes)
def _load(ours, mapping):
    """Copy timm's tensors into our model: ``mapping`` = {our key: timm tensor}; every key of ours."""
    state = ours.state_dict()
    assert set(mapping) == {k for k in state if not k.endswith("num_batches_tracked")}
    ours.load_state_dict({**state, **mapping})


def _same_logits(ours, ref, size):
    torch.manual_seed(0)
    img = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(img), ref.eval()(img), rtol=1e-4, atol=1e-4)


def test_convnext_matches_timm():
    depths = (1, 2, 1, 1)
    ref = timm.create_model("convnext_tiny", pretrained=False, depths=depths, dims=(8, 16, 32, 64), num_classes=5)
    ours = build_model(str(ZOO / "convnext_t.yaml"), ["stages.embed_dim=8", "stages.depths=[1,2,1,1]",
                                                       "num_classes=5", "image_size=64"])
    r = ref.state_dict()
    m = {"stem.proj.weight": r["stem.0.weight"], "stem.proj.bias": r["stem.0.bias"],
         "stem.norm.weight": r["stem.1.weight"], "stem.norm.bias": r["stem.1.bias"],
         "head.norm.weight": r["head.norm.weight"], "head.norm.bias": r["head.norm.bias"],
         "head.fc.weight": r["head.fc.weight"], "head.fc.bias": r["head.fc.bias"]}
    for s, depth in enumerate(depths):
        for b in range(depth):
            t, o = f"stages.{s}.blocks.{b}.", f"stages.{s}.blocks.{b}."
            for k in ("conv_dw.weight", "conv_dw.bias", "norm.weight", "norm.bias", "mlp.fc1.weight",
                      "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
                m[o + k] = r[t + k]
            m[o + "ls.gamma"] = torch.randn_like(r[t + "gamma"])  # not 1e-6, so the scale is seen
            r[t + "gamma"].copy_(m[o + "ls.gamma"])
    for s in range(3):  # our downsampler ends stage s, timm's starts stage s + 1
        for k in ("weight", "bias"):
            m[f"stages.{s}.downsample.norm.{k}"] = r[f"stages.{s + 1}.downsample.0.{k}"]
            m[f"stages.{s}.downsample.conv.{k}"] = r[f"stages.{s + 1}.downsample.1.{k}"]
    ref.load_state_dict(r)
    _load(ours, m)
    _same_logits(ours, ref, 64)


def test_vit_matches_timm_with_the_class_token():
    ref = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                            depth=2, num_heads=2, num_classes=5)
    ours = build_model(str(ZOO / "vit_s16.yaml"), ["image_size=32", "patch_size=8", "dim=32", "depth=2",
                                                    "heads=2", "num_classes=5"])
    r = ref.state_dict()
    m = {"cls_token.token": r["cls_token"], "pos_embed.0.pos": r["pos_embed"],
         "stem.proj.weight": r["patch_embed.proj.weight"], "stem.proj.bias": r["patch_embed.proj.bias"],
         "head.norm.weight": r["norm.weight"], "head.norm.bias": r["norm.bias"],
         "head.fc.weight": r["head.weight"], "head.fc.bias": r["head.bias"]}
    for b in range(2):
        for k in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            for p in ("weight", "bias"):
                m[f"stages.0.blocks.{b}.{k}.{p}"] = r[f"blocks.{b}.{k}.{p}"]
    _load(ours, m)
    _same_logits(ours, ref, 32)


def test_mambaout_matches_timm():
    ref = timm.create_model("mambaout_tiny", pretrained=False, depths=(1, 2), dims=(24, 48), num_classes=5)
    ours = build_model(str(ZOO / "mambaout_t.yaml"), ["stages.dims=[24,48]", "stages.depths=[1,2]",
                                                       "num_classes=5", "image_size=64"])
    r = ref.state_dict()
    m = {}
    for i in (1, 2):
        for p in ("weight", "bias"):
            m[f"stem.conv{i}.conv.{p}"] = r[f"stem.conv{i}.{p}"]
            m[f"stem.conv{i}.norm.{p}"] = r[f"stem.norm{i}.{p}"]
    for p in ("weight", "bias"):
        m[f"stages.0.downsample.conv.{p}"] = r[f"stages.1.downsample.conv.{p}"]
        m[f"stages.0.downsample.norm.{p}"] = r[f"stages.1.downsample.norm.{p}"]
        for ours_k, timm_k in (("norm", "norm"), ("fc1", "pre_logits.fc"), ("norm2", "pre_logits.norm"), ("fc", "fc")):
            m[f"head.{ours_k}.{p}"] = r[f"head.{timm_k}.{p}"]
    for s, depth in enumerate((1, 2)):
        for b in range(depth):
            pre = f"stages.{s}.blocks.{b}."
            g, v = r[pre + "fc1.weight"].chunk(2), r[pre + "fc1.bias"].chunk(2)  # [g; (i, c)]
            m.update({pre + "fc1_g.weight": g[0], pre + "fc1_v.weight": g[1], pre + "fc1_g.bias": v[0],
                      pre + "fc1_v.bias": v[1]})
            for k in ("norm", "conv", "fc2"):
                for p in ("weight", "bias"):
                    m[f"{pre}{k}.{p}"] = r[f"{pre}{k}.{p}"]
    _load(ours, m)
    _same_logits(ours, ref, 64)
