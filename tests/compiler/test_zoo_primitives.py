"""The language pieces the model zoo needed: layer scale, channel slices, GroupNorm, conv padding
that never changes the grid silently, conv stems/downsamplers with the norm before or after, the
class token and its position slot, global_pool avg|token, and heads only when a component needs them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compiler_helpers import TEST_MIXER, first_block, iso_spec, nparams

from archdsl import registry
from archdsl.compiler import BuildContext, build_model
from archdsl.errors import SpecError
from archdsl.layers.base import map_to_tokens, tokens_to_map

HW = (3, 5)


def block_of(body, **kw):
    return first_block(build_model(iso_spec(body, **kw)))


def test_layer_scale_gamma_per_channel():
    blk = block_of([{"layer_scale": 0.5, "name": "ls"}, {"layer_scale": {"init": 2.0}, "name": "ls2"}])
    assert nparams(blk) == 16 and blk.ls.gamma.shape == (8,)
    torch.testing.assert_close(blk.ls.gamma, torch.full((8,), 0.5))
    with torch.no_grad():
        blk.ls.gamma.copy_(torch.arange(8.0))
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), x * torch.arange(8.0) * 2.0)
    with pytest.raises(SpecError, match=r"layer_scale init must be a number in \(0.0, inf\), got -1"):
        block_of([{"layer_scale": -1}])


def test_slice_runs_a_module_on_part_of_the_channels():
    body = [{"branch": {"keep": {"slice": [0, 5]}, "conv": [{"slice": [5, 8]}, {"dwconv": 3, "name": "dw"}],
                        "merge": "concat"}}]
    blk = block_of(body)
    assert blk.dw.weight.shape == (3, 1, 3, 3)
    x = torch.randn(2, 15, 8)
    c = map_to_tokens(F.conv2d(tokens_to_map(x[..., 5:], HW), blk.dw.weight, blk.dw.bias, padding=1, groups=3))[0]
    torch.testing.assert_close(blk(x, HW), torch.cat([x[..., :5], c], dim=-1))
    with pytest.raises(SpecError, match=r"slice needs 0 <= start < stop <= 8 \(the input width\), got \[4, 9\]"):
        block_of([{"slice": [4, 9]}])


def test_groupnorm_is_torch_groupnorm_on_the_grid():
    blk = block_of([{"norm": {"type": "groupnorm", "groups": 2}, "name": "gn"}])
    x = torch.randn(2, 15, 8)
    ref = F.group_norm(tokens_to_map(x, HW), 2, blk.gn.weight, blk.gn.bias, 1e-5)
    torch.testing.assert_close(blk(x, HW), map_to_tokens(ref)[0])
    with pytest.raises(SpecError, match="groupnorm groups 3 must divide the width 8"):
        block_of([{"norm": {"type": "groupnorm", "groups": 3}}])
    with pytest.raises(SpecError, match="norm groups is an option of groupnorm, not of layernorm"):
        block_of([{"norm": {"type": "layernorm", "groups": 2}}])


def _primitive(name, arg, dim=8):
    ctx = BuildContext(dim_in=dim, variables={}, drop_path=0.0, path=("body", 0, name),
                       locate=lambda p: {"file": "t.yaml", "line": 3, "col": 5, "path": ".".join(map(str, p))})
    return registry.get("primitive", name)(arg, ctx)


def test_conv_padding_keeps_the_grid_or_is_a_located_error():
    conv, _ = _primitive("conv", {"kernel": 2, "stride": 2})
    assert conv.padding == (0, 0)  # kernel 2 stride 2: 8x8 -> 4x4, every pixel read once
    y, hw = conv(torch.randn(1, 64, 8), (8, 8))
    assert hw == (4, 4)
    assert _primitive("conv", {"kernel": 3, "stride": 2})[0].padding == (1, 1)
    assert _primitive("dwconv", 7)[0].padding == (3, 3)
    with pytest.raises(SpecError) as e:
        _primitive("conv", {"kernel": 2})
    assert str(e.value) == ("t.yaml:3:5: body.0.conv: conv kernel 2 with stride 1 cannot keep the grid at 1/1 "
                            "of the input with symmetric padding (an even kernel at stride 1 changes the size by "
                            "one); write padding: N to choose the size change")
    assert _primitive("conv", {"kernel": 2, "padding": 1})[0].padding == (1, 1)  # written: accepted
    with pytest.raises(SpecError, match="dwconv kernel 1 with stride 2 skips input pixels"):
        _primitive("dwconv", {"kernel": 1, "stride": 2})
    with pytest.raises(SpecError) as e:
        _primitive("conv", {"kernel": 3, "padding": -1})
    assert e.value.path == "body.0.conv.padding"


def _hier(downsample, **kw):
    spec = {"name": "h", "image_size": 32, "num_classes": 3, "stem": {"type": "patch_embed", "patch_size": 4},
            "stages": {"dims": [8, 16], "depths": [1, 1], "heads": 2}, "downsample": downsample,
            "block": "t", "mixer": TEST_MIXER, "blocks": {"t": {"body": ["identity"]}}}
    spec.update(kw)
    return build_model(spec)


def test_conv_downsample_kernel_2_halves_the_grid_and_norm_goes_first():
    model = _hier({"type": "conv_downsample", "kernel": 2, "norm_position": "before", "norm_eps": 1e-6})
    ds = model.stages[0].downsample
    x = torch.randn(2, 64, 8)
    y, hw = ds(x, (8, 8))
    assert hw == (4, 4) and y.shape == (2, 16, 16)  # 8x8 -> 4x4 (not 5x5)
    m = tokens_to_map(F.layer_norm(x, (8,), ds.norm.weight, ds.norm.bias, 1e-6), (8, 8))
    torch.testing.assert_close(y, map_to_tokens(F.conv2d(m, ds.conv.weight, ds.conv.bias, stride=2))[0])
    with pytest.raises(SpecError) as e:
        _hier({"type": "conv_downsample", "kernel": 1})
    assert e.value.path == "downsample"
    assert "conv_downsample kernel 1 with stride 2 skips input pixels" in e.value.message
    assert _hier({"type": "conv_downsample", "kernel": 1, "padding": 0}).stages[0].downsample.conv.padding == (0, 0)


def test_conv_stem_with_layernorm_and_gelu():
    stem = registry.get("stem", "conv_stem")(3, 16, norm="layernorm", act="gelu", bias=True, norm_eps=1e-6)
    img = torch.randn(1, 3, 16, 16)
    x, hw = stem(img)
    c1, c2 = stem.conv1, stem.conv2
    ref = F.conv2d(img, c1.conv.weight, c1.conv.bias, stride=2, padding=1)
    ref = F.gelu(F.layer_norm(ref.permute(0, 2, 3, 1), (8,), c1.norm.weight, c1.norm.bias, 1e-6)).permute(0, 3, 1, 2)
    ref = F.conv2d(ref, c2.conv.weight, c2.conv.bias, stride=2, padding=1)
    ref = F.layer_norm(ref.permute(0, 2, 3, 1), (16,), c2.norm.weight, c2.norm.bias, 1e-6)
    assert hw == (4, 4)
    torch.testing.assert_close(x, ref.reshape(1, 16, 16))


@pytest.mark.parametrize("position,index", [(True, 0), ("middle", 8)])
def test_class_token_position_slot_and_token_pool(position, index):
    spec = iso_spec([{"mixer": {"type": "softmax_attention"}}], image_size=16, patch_size=4, dim=8,
                    class_token=position, posenc="ape", head={"type": "norm_pool_linear", "global_pool": "token"})
    model = build_model(spec).eval()
    assert model.pos_embed[0].pos.shape == (1, 17, 8) and model.cls_token.token.shape == (1, 1, 8)
    img = torch.randn(2, 3, 16, 16)
    tokens, hw = model.stem(img)
    seen = {}
    model.stages[0].blocks[0].register_forward_pre_hook(lambda m, a: seen.update(x=a[0]))
    logits = model(img)
    x = seen["x"]  # the class token plus its table slot at `index`
    torch.testing.assert_close(x[:, index], (model.cls_token.token + model.pos_embed[0].pos[:, index])[0].expand(2, -1))
    feats, _ = model.forward_tokens(img)
    head = model.head
    torch.testing.assert_close(logits, head.fc(head.norm(feats)[:, 0]))
    assert model(torch.randn(1, 3, 24, 24)).shape == (1, 3)  # other grids: the slot is not interpolated


def test_global_pool_avg_skips_the_class_token_and_token_needs_one():
    spec = iso_spec(["identity"], class_token=True, head={"type": "pool_linear"})
    model = build_model(spec).eval()
    img = torch.randn(1, 3, 16, 16)
    feats, _ = model.forward_tokens(img)
    torch.testing.assert_close(model(img), model.head.fc(feats[:, 1:].mean(1)))
    with pytest.raises(SpecError, match="global_pool: token needs a class token"):
        build_model(iso_spec(["identity"], head={"type": "pool_linear", "global_pool": "token"}))
    with pytest.raises(SpecError, match="'class_token' belongs to the isotropic layout"):
        _hier("patch_merging", class_token=True)


def test_heads_only_when_a_component_needs_them():
    spec = iso_spec([{"mixer": "$mixer", "name": "attn"}], mixer={"type": "selective_ssm", "d_state": 4})
    del spec["heads"]
    model = build_model(spec, device="meta")  # selective_ssm's heads default (1) applies
    assert isinstance(first_block(model).attn, registry.get("mixer", "selective_ssm"))
    spec["mixer"] = {"type": "softmax_attention"}
    with pytest.raises(SpecError) as e:
        build_model(spec)
    assert e.value.message.startswith("mixer 'softmax_attention' needs heads: give stages.heads (hierarchical), "
                                      "heads (isotropic) or heads in the mixer's options")


def test_causal_conv1d_flip_and_scale_along_the_sequence():
    blk = block_of([{"branch": {"fwd": [{"conv1d": 4, "name": "c"}],
                                "bwd": ["flip", {"conv1d": {"kernel": 4}, "name": "cb"}, "flip"], "merge": "add"}},
                    {"scale": 0.5}])
    assert blk.c.weight.shape == (8, 1, 4) and nparams(blk.c) == 8 * 4 + 8  # Mamba's conv1d
    x = torch.randn(2, 15, 8)

    def causal(t, conv):  # token n sees tokens n-3..n
        return F.conv1d(F.pad(t.transpose(1, 2), (3, 0)), conv.weight, conv.bias, groups=8).transpose(1, 2)

    ref = (causal(x, blk.c) + causal(x.flip(1), blk.cb).flip(1)) * 0.5
    torch.testing.assert_close(blk(x, HW), ref)
    with pytest.raises(SpecError, match="a non-causal conv1d needs an odd kernel to keep the length, got 4"):
        block_of([{"conv1d": {"kernel": 4, "causal": False}}])
    with pytest.raises(SpecError, match=r"scale needs a number, e.g. \{scale: 0.5\}, got 'x'"):
        block_of([{"scale": "x"}])


def test_a_row_scan_takes_the_class_token_in_the_sequence():
    spec = iso_spec([{"mixer": {"type": "selective_ssm", "d_state": 4}, "name": "ssm"}], class_token="middle")
    model = build_model(spec).eval()
    ssm = first_block(model).ssm
    x = torch.randn(1, 17, 8)  # 16 grid tokens + the class token
    assert ssm(x, (4, 4)).shape == (1, 17, 8)
    # the same as scanning the sequence as a 1 x 17 grid
    torch.testing.assert_close(ssm(x, (4, 4)), ssm(x, (1, 17)))
