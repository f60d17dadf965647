"""Two language pieces EfficientVMamba-T needed: ``{reuse: NAME}`` (a module run again, its
parameters shared: one channel attention applied to two branches) and the ``squeeze_excite``
primitive (SE / BiAttn channel attention), each against a straightforward computation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml
from compiler_helpers import first_block, iso_spec, nparams

from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.language import dump_resolved, load_spec_dict

HW = (3, 5)


def block_of(body, **kw):
    return first_block(build_model(iso_spec(body, **kw)))


def test_reuse_runs_the_same_module_again():
    blk = block_of([{"linear": {"out": 8}, "name": "fc"}, "gelu", {"reuse": "fc"}])
    assert nparams(blk) == 8 * 8 + 8 and list(dict(blk.named_children())) == ["fc", "1"]
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), blk.fc(F.gelu(blk.fc(x))))


def test_reuse_shares_a_module_between_branch_paths():
    body = [{"branch": {"a": [{"linear": {"out": 8}, "name": "p"}, {"linear": {"out": 8, "bias": False}, "name": "q"}],
                        "b": ["tanh", {"reuse": "q"}], "merge": "add"}}]
    blk = block_of(body)
    assert nparams(blk) == 8 * 8 + 8 + 8 * 8
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), blk.q(blk.p(x)) + blk.q(torch.tanh(x)))
    (blk(x, HW) ** 2).sum().backward()  # both uses contribute to the one gradient
    q = blk.q.weight.detach().requires_grad_()
    (((F.linear(blk.p(x), q) + F.linear(torch.tanh(x), q)) ** 2).sum()).backward()
    torch.testing.assert_close(blk.q.weight.grad, q.grad)


def test_reuse_survives_dump_resolved():
    spec = load_spec_dict(iso_spec([{"linear": 8, "name": "fc"}, {"reuse": "fc"}]))
    again = load_spec_dict(yaml.safe_load(dump_resolved(spec)))
    assert nparams(build_model(again)) == nparams(build_model(spec))


@pytest.mark.parametrize("body,message", [
    ([{"reuse": "fc"}], r"body\.0\.reuse: reuse: no module named 'fc' before this node at this level of the "
                        r"block; named so far: \(none\)"),
    ([{"linear": 8, "name": "fc1"}, {"reuse": "fcl"}], r"reuse: no module named 'fcl' .*\(did you mean 'fc1'\?\); "
                                                       r"named so far: fc1"),
    ([{"linear": 4, "name": "down"}, {"reuse": "down"}], r"reuse: module 'down' reads width 8, but its input "
                                                         r"here has width 4"),
    ([{"linear": 8, "name": "fc"}, {"reuse": "fc", "name": "again"}], r"a 'reuse' node takes no 'name'"),
    ([{"reuse": 3}], r"'reuse' takes the name of a module of this block, got a number 3"),
])
def test_reuse_errors_are_located(body, message):
    with pytest.raises(SpecError, match=message):
        build_model(iso_spec(body))


def test_squeeze_excite_is_bi_attn_with_a_layernorm():
    """EfficientVMamba's BiAttn on a [B, H, W, C] map: LN, mean over H, W, Linear, GELU, Linear, sigmoid."""
    blk = block_of([{"squeeze_excite": {"ratio": 0.25, "act": "gelu", "norm": "layernorm"}, "name": "se"}])
    se = blk.se
    assert nparams(blk) == 2 * 8 + (8 * 2 + 2) + (2 * 8 + 8)
    with torch.no_grad():
        for p in se.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.randn(2, 3, 5, 8)
    g = F.layer_norm(x, (8,), se.norm.weight, se.norm.bias, 1e-5).mean([1, 2], keepdim=True)
    ref = x * torch.sigmoid(F.linear(F.gelu(F.linear(g, se.reduce.weight, se.reduce.bias)),
                                     se.expand.weight, se.expand.bias))
    torch.testing.assert_close(blk(x.reshape(2, 15, 8), HW), ref.reshape(2, 15, 8))


def test_squeeze_excite_is_mobilenet_se_with_1x1_convs():
    """MobileNetV2 / EfficientNet SE on a [B, C, H, W] map: avg pool, conv 1x1, ReLU, conv 1x1, sigmoid."""
    blk = block_of([{"squeeze_excite": {"channels": 3}, "name": "se"}])
    se = blk.se
    assert se.norm is None and se.reduce.weight.shape == (3, 8)
    x = torch.randn(2, 8, 3, 5)
    s = F.adaptive_avg_pool2d(x, 1)
    s = F.conv2d(F.relu(F.conv2d(s, se.reduce.weight[..., None, None], se.reduce.bias)),
                 se.expand.weight[..., None, None], se.expand.bias)
    ref = x * torch.sigmoid(s)
    torch.testing.assert_close(blk(x.flatten(2).transpose(1, 2), HW), ref.flatten(2).transpose(1, 2))
    assert block_of([{"squeeze_excite": 0.01, "name": "se"}]).se.channels == 1  # max(1, int(8 * 0.01))


@pytest.mark.parametrize("arg,message", [
    ({"act": "gelo"}, r"unknown activation 'gelo' \(did you mean 'gelu'\?\)"),
    ({"norm": "layer_norm"}, r"unknown norm 'layer_norm' \(did you mean 'layernorm'\?\)"),
    ({"ratio": 1.5}, r"ratio must be a number in \(0, 1\]; got 1.5"),
    ({"channels": 0}, r"channels must be a positive integer; got 0"),
    ({"ration": 0.5}, r"unknown option 'ration' for squeeze_excite \(did you mean 'ratio'\?\)"),
])
def test_squeeze_excite_errors(arg, message):
    with pytest.raises(SpecError, match=message):
        block_of([{"squeeze_excite": arg}])
