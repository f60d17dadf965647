"""Every template primitive: exact parameter counts, numerics against torch, keys, option errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compiler_helpers import TEST_MIXER, first_block, iso_spec, nparams

from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.layers.base import map_to_tokens, tokens_to_map

HW = (3, 5)


def block_of(body, **kw):
    return first_block(build_model(iso_spec(body, **kw)))


def x8(n=15, c=8):
    return torch.randn(2, n, c)


def test_linear_forms_and_numerics():
    blk = block_of([{"linear": 16, "name": "a"}, {"linear": {"out": 8, "bias": False}, "name": "b"}])
    assert nparams(blk.a) == 8 * 16 + 16 and nparams(blk.b) == 16 * 8
    assert blk.b.bias is None
    x = x8()
    ref = F.linear(F.linear(x, blk.a.weight, blk.a.bias), blk.b.weight)
    torch.testing.assert_close(blk(x, HW), ref)
    blk2 = block_of([{"linear": None, "name": "c"}])  # out defaults to the input width
    assert tuple(blk2.c.weight.shape) == (8, 8)


def test_conv_and_dwconv_on_the_grid():
    blk = block_of([{"conv": {"out": 8, "kernel": 3, "groups": 2}, "name": "c"},
                    {"dwconv": {"kernel": 5, "bias": False}, "name": "d"}])
    assert nparams(blk.c) == 8 * (8 // 2) * 9 + 8
    assert nparams(blk.d) == 8 * 25 and blk.d.groups == 8
    x = x8()
    m = F.conv2d(tokens_to_map(x, HW), blk.c.weight, blk.c.bias, padding=1, groups=2)
    m = F.conv2d(m, blk.d.weight, None, padding=2, groups=8)
    torch.testing.assert_close(blk(x, HW), map_to_tokens(m)[0])


def test_norms():
    blk = block_of([{"norm": "layernorm", "name": "ln"}, {"norm": "rmsnorm", "name": "rms"},
                    {"norm": "batchnorm", "name": "bn"}, {"norm": None, "name": "bare"}])
    assert type(blk.bare).__name__ == "TokenLayerNorm"
    assert nparams(blk.ln) == 16 and nparams(blk.rms) == 8 and nparams(blk.bn) == 16
    blk.eval()
    x = x8()
    y = F.layer_norm(x, (8,), blk.ln.weight, blk.ln.bias, 1e-5)
    y = F.rms_norm(y, (8,), blk.rms.weight, 1e-6)
    y = (y - blk.bn.running_mean) / torch.sqrt(blk.bn.running_var + 1e-5) * blk.bn.weight + blk.bn.bias
    y = F.layer_norm(y, (8,), blk.bare.weight, blk.bare.bias, 1e-5)
    torch.testing.assert_close(blk(x, HW), y)
    blk2 = block_of(["norm"])
    assert nparams(blk2) == 16


@pytest.mark.parametrize("name,fn", [("relu", F.relu), ("gelu", F.gelu), ("silu", F.silu),
                                     ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("identity", lambda t: t)])
def test_activations(name, fn):
    blk = block_of([name])
    x = x8()
    torch.testing.assert_close(blk(x, HW), fn(x))
    assert nparams(blk) == 0


def test_mlp_is_timm_like():
    blk = block_of([{"mlp": {"ratio": 4}, "name": "mlp"}])
    assert set(blk.state_dict()) == {"mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
    assert nparams(blk) == (8 * 32 + 32) + (32 * 8 + 8)
    x = x8()
    ref = F.linear(F.gelu(F.linear(x, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    torch.testing.assert_close(blk(x, HW), ref)
    blk2 = block_of([{"mlp": {"hidden": 5, "out": 8, "act": "relu", "bias": False}, "name": "m"}])
    assert nparams(blk2) == 8 * 5 + 5 * 8


def test_dropout_and_drop_path():
    blk = block_of([{"dropout": 0.5, "name": "do"}, {"drop_path": 0.5, "name": "dp"}, "drop_path"])
    assert blk.do.p == 0.5 and blk.dp.p == 0.5
    assert blk._modules["2"].p == 0.0  # bare drop_path takes this block's scheduled rate (0: one block)
    x = torch.ones(64, 4, 8)
    blk.eval()
    torch.testing.assert_close(blk(x, (2, 2)), x)
    blk.train()
    y = blk.dp(x, (2, 2))
    per_sample = y.reshape(64, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # whole samples dropped, kept ones scaled 1/(1-p)
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_mixer_posenc_gate():
    blk = block_of([{"mixer": "$mixer", "name": "attn"}, {"posenc": "cpe", "name": "pe"},
                    {"gate": {"act": "silu", "proj": True}, "name": "g"},
                    {"mixer": {"type": TEST_MIXER, "heads": 4, "scale_init": 0.5}, "name": "m2"}])
    assert type(blk.attn).__name__ == "TinyMixer" and blk.attn.heads == 2  # $heads
    assert blk.m2.heads == 4 and float(blk.m2.scale.detach()[0]) == 0.5
    assert nparams(blk.attn) == 8 * 8 + 8 + 8
    assert nparams(blk.pe) == 8 * 9 + 8 and nparams(blk.g) == 8 * 8 + 8
    x = x8()
    y = blk.attn(x, HW)
    y = blk.pe(y, HW)
    y = F.silu(F.linear(y, blk.g.proj.weight, blk.g.proj.bias))
    y = blk.m2(y, HW)
    torch.testing.assert_close(blk(x, HW), y)


def test_primitive_option_errors_have_did_you_mean():
    with pytest.raises(SpecError, match=r"unknown option 'ratoi' for mlp \(did you mean 'ratio'\?\)"):
        block_of([{"mlp": {"ratoi": 2}}])
    with pytest.raises(SpecError, match=r"unknown norm 'layrnorm' \(did you mean 'layernorm'\?\)"):
        block_of([{"norm": "layrnorm"}])
    with pytest.raises(SpecError, match=r"unknown primitive 'lienar' \(did you mean 'linear'\?\)"):
        block_of([{"lienar": 8}])
    with pytest.raises(SpecError, match=r"'gelu' takes no options"):
        block_of([{"gelu": 1}])
    with pytest.raises(SpecError, match=r"drop_path rate must be a number in \[0, 1\)"):
        block_of([{"drop_path": 1.5}])


def test_mixer_errors_point_at_the_spec_mixer():
    spec = iso_spec([{"mixer": "$mixer"}])
    spec["mixer"] = {"type": TEST_MIXER, "scale_innit": 2.0}
    with pytest.raises(SpecError) as e:
        build_model(spec)
    assert e.value.path == "mixer.scale_innit"
    assert "unknown option 'scale_innit' for mixer 'c2_test_mixer' (did you mean 'scale_init'?)" in str(e.value)
    spec["mixer"] = {"type": TEST_MIXER, "scale_init": -1.0}
    with pytest.raises(SpecError, match=r"error building 'c2_test_mixer' at mixer: scale_init must be >= 0"):
        build_model(spec)
    spec["mixer"] = {"type": "c2_test_mixr"}
    with pytest.raises(SpecError, match=r"unknown mixer 'c2_test_mixr' \(did you mean 'c2_test_mixer'\?\)") as e:
        build_model(spec)
    assert e.value.path == "mixer.type"
    spec = iso_spec([{"mixer": "$mixer"}])
    del spec["mixer"]
    with pytest.raises(SpecError, match="the spec gives no 'mixer'"):
        build_model(spec)


def test_mixer_and_posenc_refs_must_name_a_component():
    with pytest.raises(SpecError, match=r"body\.0\.posenc: posenc must be a name or a mapping with 'type', got 5"):
        block_of([{"posenc": 5}])
    with pytest.raises(SpecError, match=r"mixer must be a name or a mapping with 'type', got \{'heads': 2\}"):
        block_of([{"mixer": {"heads": 2}}])
    blk = block_of([{"gate": "silu", "name": "g"}])  # an activation name is the gate's `act`
    assert blk.g.act_name == "silu"
