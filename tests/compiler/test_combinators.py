"""seq / residual / branch (mul, add, concat), names in the state dict, width checks with locations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compiler_helpers import first_block, iso_spec, nparams

from archdsl.compiler import build_model
from archdsl.errors import SpecError

HW = (3, 5)


def lin(blk, key, x):
    m = blk._modules[key]
    return F.linear(x, m.weight, m.bias)


def test_seq_and_explicit_seq_and_positional_keys():
    blk = first_block(build_model(iso_spec([{"linear": 16}, {"seq": [{"linear": 8}, "gelu"]}])))
    assert set(blk.state_dict()) == {"0.weight", "0.bias", "1_0.weight", "1_0.bias"}
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), F.gelu(lin(blk, "1_0", lin(blk, "0", x))))


def test_residual_adds_input():
    blk = first_block(build_model(iso_spec([{"residual": [{"norm": "layernorm", "name": "n"},
                                                          {"linear": 8, "name": "f"}]}])))
    assert set(blk.state_dict()) == {"n.weight", "n.bias", "f.weight", "f.bias"}  # no level for residual
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), x + lin(blk, "f", F.layer_norm(x, (8,), blk.n.weight, blk.n.bias)))


@pytest.mark.parametrize("merge", ["mul", "add", "concat"])
def test_branch_merges(merge):
    body = [{"branch": {"a": {"linear": 8, "name": "pa"}, "b": [{"linear": 8}, "silu"], "merge": merge}}]
    if merge == "concat":
        body.append({"linear": 8, "name": "out"})  # 16 -> 8 so the block keeps its width
    blk = first_block(build_model(iso_spec(body)))
    x = torch.randn(2, 15, 8)
    a, b = lin(blk, "pa", x), F.silu(lin(blk, "0_b_0", x))
    ref = {"mul": a * b, "add": a + b, "concat": torch.cat([a, b], -1)}[merge]
    if merge == "concat":
        assert blk.out.weight.shape == (8, 16)
        ref = lin(blk, "out", ref)
    torch.testing.assert_close(blk(x, HW), ref)


def test_named_combinator_opens_a_level():
    blk = first_block(build_model(iso_spec([{"residual": [{"linear": 8, "name": "fc"}, "gelu"], "name": "res"}])))
    assert set(blk.state_dict()) == {"res.fc.weight", "res.fc.bias"}
    x = torch.randn(2, 15, 8)
    torch.testing.assert_close(blk(x, HW), x + F.gelu(lin(blk.res, "fc", x)))


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_residual_width_error_is_located_in_the_template(tmp_path):
    write(tmp_path, "wide.yaml", "block: wide\nbody:\n  - residual: {linear: 16}\n")
    spec = write(tmp_path, "s.yaml", "layout: isotropic\npatch_size: 4\ndim: 8\ndepth: 1\nheads: 2\n"
                                     "image_size: 16\nblock: wide.yaml\n")
    with pytest.raises(SpecError) as e:
        build_model(str(spec))
    msg = str(e.value)
    assert "wide.yaml:3:5: body.0.residual: residual: body changes width 8 -> 16" in msg
    assert "(in stage 0 block 0, dim 8)" in msg


def test_branch_width_mismatch_and_block_width(tmp_path):
    spec = write(tmp_path, "s.yaml", """\
layout: isotropic
patch_size: 4
dim: 8
depth: 1
heads: 2
image_size: 16
block: t
blocks:
  t:
    body:
      - branch:
          a: {linear: 8}
          b: {linear: 4}
          merge: mul
""")
    with pytest.raises(SpecError, match=r"s.yaml:11:9: blocks.t.body.0.branch: branch: merge 'mul' needs "
                                        r"equal widths, got a: 8, b: 4"):
        build_model(str(spec))
    d = iso_spec([{"linear": 16}])
    with pytest.raises(SpecError, match=r"block 't' must keep the width: body changes 8 -> 16"):
        build_model(d)
    d = iso_spec([{"conv": {"stride": 2}}])
    with pytest.raises(SpecError, match=r"must keep the token grid"):
        build_model(d)


def test_duplicate_names_and_reserved_names():
    with pytest.raises(SpecError, match="duplicate module name 'x'"):
        build_model(iso_spec([{"linear": 8, "name": "x"}, {"linear": 8, "name": "x"}]))
    with pytest.raises(SpecError, match="module name 'forward' is reserved"):
        build_model(iso_spec([{"linear": 8, "name": "forward"}]))


def test_template_params_and_block_options():
    body = [{"mlp": {"ratio": "$r"}, "name": "mlp"}]
    spec = iso_spec(body)
    spec["blocks"]["t"]["params"] = {"r": 2.0}
    assert nparams(first_block(build_model(spec))) == (8 * 16 + 16) + (16 * 8 + 8)
    spec["block"] = {"type": "t", "r": 1.0}
    assert nparams(first_block(build_model(spec))) == (8 * 8 + 8) * 2
    spec["block"] = {"type": "t", "rr": 1.0}
    with pytest.raises(SpecError, match=r"unknown option 'rr' for block 't' \(did you mean 'r'\?\)"):
        build_model(spec)


class _Scale(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, hw):
        return self.value * x


def test_user_primitive_and_copies():
    import copy
    import io

    from archdsl import registry

    @registry.register("primitive", "c2_scale", override=True)
    def c2_scale(arg, ctx):
        opts = ctx.options(arg if isinstance(arg, dict) else {"value": arg}, {"value": 1.0}, "c2_scale")
        if opts["value"] == 0:
            raise ctx.error("c2_scale value must not be 0")
        return _Scale(opts["value"]), ctx.dim_in

    try:
        m = build_model(iso_spec([{"c2_scale": 3.0}, "identity", {"linear": 8, "name": "fc"}])).eval()
        blk = first_block(m)
        x = torch.randn(2, 15, 8)
        torch.testing.assert_close(blk(x, HW), lin(blk, "fc", 3.0 * x))
        with pytest.raises(SpecError, match=r"blocks.t.body.0.c2_scale: c2_scale value must not be 0"):
            build_model(iso_spec([{"c2_scale": {"value": 0}}]))
        with pytest.raises(SpecError, match=r"unknown option 'valeu' for c2_scale \(did you mean 'value'\?\)"):
            build_model(iso_spec([{"c2_scale": {"valeu": 2}}]))
        # deepcopy and pickling keep the program bound to the copy's own modules
        img = torch.randn(1, 3, 16, 16)
        m2 = copy.deepcopy(m)
        torch.testing.assert_close(m2(img), m(img))
        with torch.no_grad():
            first_block(m2).fc.weight.copy_(torch.randn(8, 8))  # (a constant shift would vanish in the LayerNorm)
        assert not torch.allclose(m2(img), m(img))
        buf = io.BytesIO()
        torch.save(m2, buf)
        buf.seek(0)
        torch.testing.assert_close(torch.load(buf, weights_only=False)(img), m2(img))
    finally:
        registry._REGISTRY["primitive"].pop("c2_scale", None)
