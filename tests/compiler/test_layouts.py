"""Hierarchical and isotropic layouts: exact parameter counts by hand, overrides (hybrids), input
sizes, drop-path schedule, Python blocks, plug-ins, init and determinism, located errors."""
from __future__ import annotations

import textwrap

import pytest
import torch
from compiler_helpers import TEST_MIXER, hier_spec, iso_spec, nparams
from torch import nn

from archdsl import registry
from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.layouts.hierarchical import drop_path_schedule

PRENORM_LINEAR = [{"residual": [{"norm": "layernorm"}, {"linear": None}]}]  # LN(d): 2d, Linear: d*d + d


def block_params(d):
    return 2 * d + d * d + d


def test_hierarchical_param_count_by_hand():
    m = build_model(hier_spec(PRENORM_LINEAR, dims=(8, 16), depths=(1, 2), heads=(1, 2), num_classes=3))
    stem = 3 * 8 * 2 * 2 + 8                     # patch_embed conv 2x2 (no norm)
    merge = 2 * 32 + 32 * 16                     # patch_merging: LN(4C) + Linear(4C, 2C, bias=False)
    head = 2 * 16 + 16 * 3 + 3                   # LayerNorm + Linear
    expected = stem + block_params(8) + merge + 2 * block_params(16) + head
    assert nparams(m) == expected
    assert m.stages[0].downsample is not None and m.stages[1].downsample is None
    assert [len(s.blocks) for s in m.stages] == [1, 2]
    y = m(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 3)
    feats, hw = m.forward_tokens(torch.randn(1, 3, 16, 16))
    assert feats.shape == (1, 16, 16) and hw == (4, 4)
    assert m.forward_features(torch.randn(1, 3, 16, 16)).shape == (1, 16, 4, 4)
    assert m.dims == [8, 16] and m.default_input_size == (3, 16, 16) and m.reduction == 4


def test_embed_dim_doubles_and_heads_divisibility_error(tmp_path):
    m = build_model(hier_spec(PRENORM_LINEAR, dims=(8, 16)) | {"stages": {"embed_dim": 8, "depths": [1, 1, 1],
                                                                           "heads": [1, 2, 4]}})
    assert m.dims == [8, 16, 32]
    p = tmp_path / "bad.yaml"
    p.write_text(textwrap.dedent("""\
        layout: hierarchical
        image_size: 32
        stages:
          dims: [8, 16, 32]
          depths: [1, 1, 1]
          heads: [1, 2, 5]
        block: transformer
        mixer: {type: %s}
        """ % TEST_MIXER))
    with pytest.raises(SpecError) as e:
        build_model(str(p))
    assert str(e.value).endswith("bad.yaml:6:17: stages.heads.2: dim 32 is not divisible by heads 5")


def test_isotropic_with_ape_and_transformer_template():
    spec = iso_spec(dim=8, depth=2, heads=2, image_size=16, patch_size=4, num_classes=5, block="transformer",
                    posenc={"type": "ape"})
    m = build_model(spec)
    stem = 3 * 8 * 16 + 8
    ape = 4 * 4 * 8                                   # grid = image_size / patch = 4x4
    mixer = 8 * 8 + 8 + 8
    block = 2 * 8 + mixer + 2 * 8 + (8 * 32 + 32) + (32 * 8 + 8)
    head = 2 * 8 + 8 * 5 + 5
    assert nparams(m) == stem + ape + 2 * block + head
    assert list(m.pos_embed[0].grid) == [4, 4]
    keys = set(m.state_dict())
    assert {"stages.0.blocks.1.norm1.weight", "stages.0.blocks.1.attn.proj.weight",
            "stages.0.blocks.1.mlp.fc2.bias", "head.fc.weight", "pos_embed.0.pos"} <= keys
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 5)
    assert m(torch.randn(1, 3, 24, 20)).shape == (1, 5)  # APE interpolated, non-square


def test_per_stage_override_hybrid():
    spec = hier_spec(PRENORM_LINEAR, dims=(8, 16, 32), depths=(1, 1, 1), heads=(1, 2, 4), image_size=32)
    spec["stages"]["override"] = {2: {"block": "transformer", "mixer": {"scale_init": 0.0}},
                                  1: {"block": {"type": "transformer", "mlp_ratio": 2.0}}}
    m = build_model(spec)
    assert m.stages[0].blocks[0].template == "t"
    assert m.stages[1].blocks[0].template == "transformer" and m.stages[1].blocks[0].mlp.fc1.out_features == 32
    attn = m.stages[2].blocks[0].attn
    assert type(attn).__name__ == "TinyMixer" and attn.heads == 4 and float(attn.scale.detach().abs().sum()) == 0.0
    assert float(m.stages[1].blocks[0].attn.scale.detach()[0]) == 1.0  # the global mixer elsewhere
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_resolution_change_same_params():
    spec = hier_spec(["identity", {"mixer": "$mixer"}], dims=(8, 16, 32), depths=(1, 1, 1), heads=(1, 2, 4),
                     image_size=32)
    m32 = build_model(spec)
    m48 = build_model(spec, image_size=48)
    assert nparams(m32) == nparams(m48) and m48.default_input_size == (3, 48, 48)
    for m, s in ((m32, 32), (m48, 48)):
        assert m(torch.randn(1, 3, s, s)).shape == (1, 3)
    assert m32(torch.randn(1, 3, 40, 24)).shape == (1, 3)  # any size the strides allow
    with pytest.raises(ValueError, match=r"input 6x6 is too small for this model: .* must be >= 8"):
        m32(torch.randn(1, 3, 6, 6))


def test_drop_path_schedule_linear_over_all_blocks():
    assert drop_path_schedule(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    spec = hier_spec(["drop_path"], dims=(8, 16), depths=(2, 3), heads=(1, 1), drop_path=0.4)
    m = build_model(spec)
    rates = [blk._modules["0"].p for st in m.stages for blk in st.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.4, 5).tolist())


class _PyBlock(nn.Module):
    def __init__(self, dim, heads, mixer, drop_path, expand: int = 2):
        super().__init__()
        self.seen = (dim, heads, dict(mixer), drop_path)
        self.fc1, self.fc2 = nn.Linear(dim, expand * dim), nn.Linear(expand * dim, dim)

    def forward(self, x, hw):
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_python_registered_block():
    registry.register("block", "c2_pyblock", override=True)(_PyBlock)
    try:
        spec = hier_spec(dims=(8, 16), depths=(1, 2), heads=(2, 4), drop_path=0.3)
        spec["block"] = {"type": "c2_pyblock", "expand": 3}
        m = build_model(spec)
        blk = m.stages[1].blocks[1]
        assert blk.seen == (16, 4, {"type": TEST_MIXER}, pytest.approx(0.3))
        assert blk.fc1.out_features == 48
        assert m(torch.randn(1, 3, 16, 16)).shape == (1, 3)
        spec["block"] = {"type": "c2_pyblock", "expnad": 3}
        with pytest.raises(SpecError, match=r"unknown option 'expnad' for block 'c2_pyblock' \(did you mean 'expand'\?\)"):
            build_model(spec)
    finally:
        registry._REGISTRY["block"].pop("c2_pyblock", None)


def test_plugin_module_from_spec(tmp_path, monkeypatch):
    (tmp_path / "c2_plugin_mod.py").write_text(textwrap.dedent("""\
        import torch
        from torch import nn
        from archdsl.registry import register

        @register("mixer", "c2_plugin_mixer")
        class PluginMixer(nn.Module):
            def __init__(self, dim, heads, gain: float = 2.0):
                super().__init__()
                self.gain = gain
            def forward(self, x, hw):
                return self.gain * x
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = iso_spec([{"mixer": "$mixer", "name": "attn"}], plugins=["c2_plugin_mod"],
                        mixer={"type": "c2_plugin_mixer", "gain": 3.0})
        m = build_model(spec, allow_plugins=True)
        x = torch.randn(1, 15, 8)
        torch.testing.assert_close(m.stages[0].blocks[0](x, (3, 5)), 3.0 * x)
    finally:
        registry._REGISTRY["mixer"].pop("c2_plugin_mixer", None)


def test_init_and_determinism_and_meta():
    spec = hier_spec(PRENORM_LINEAR + [{"norm": "layernorm", "name": "ln"}], dims=(32, 64), depths=(2, 2),
                     heads=(1, 1))
    torch.manual_seed(3)
    a = build_model(spec)
    torch.manual_seed(3)
    b = build_model(spec)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    lin = a.stages[1].blocks[0]._modules["0_1"]
    w = lin.weight.detach()
    assert lin.bias.detach().abs().sum() == 0 and 0.017 < float(w.std()) < 0.023  # trunc_normal std .02
    assert torch.equal(a.stages[0].blocks[0].ln.weight, torch.ones(32))
    meta = build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    assert nparams(meta) == nparams(a)


def test_unknown_components_did_you_mean(tmp_path):
    spec = hier_spec(stem="patch_embd")
    with pytest.raises(SpecError, match=r"unknown stem 'patch_embd' \(did you mean 'patch_embed'\?\)") as e:
        build_model(spec)
    assert e.value.path == "stem"
    spec = hier_spec(downsample={"type": "patch_merging", "ratio": 2})
    with pytest.raises(SpecError, match=r"unknown option 'ratio' for downsample 'patch_merging'") as e:
        build_model(spec)
    assert e.value.path == "downsample.ratio"
    spec = hier_spec(block="transfromer")
    with pytest.raises(SpecError, match=r"unknown block 'transfromer' \(did you mean 'transformer'\?\)"):
        build_model(spec)
    spec = hier_spec(head={"type": "pool_linear", "drop": 2.0})
    spec["head"]["drop"] = 0.5
    assert isinstance(build_model(spec).head.drop, nn.Dropout)


def test_image_size_does_not_change_the_architecture():
    spec = iso_spec(["identity"], dim=8, image_size=16, patch_size=4, posenc="ape")
    a, b = build_model(spec), build_model(spec, image_size=32)
    assert nparams(a) == nparams(b) == nparams(build_model(spec, device="meta"))
    assert list(b.pos_embed[0].grid) == [4, 4] and b.default_input_size == (3, 32, 32)
    assert b(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_bad_option_values_are_spec_errors():
    for body, needle in [([{"linear": {"bias": "yes"}}], "linear bias must be true or false"),
                         ([{"mlp": {"ratio": 0}}], "mlp ratio must be a number in (0.0, inf)"),
                         ([{"norm": {"type": "layernorm", "eps": "x"}}], "norm eps must be a number"),
                         ([{"conv": {"kernel": 0}}], "conv kernel must be a positive integer, got 0"),
                         ([{"linear": 8, "name": "training"}], "module name 'training' is reserved")]:
        with pytest.raises(SpecError) as e:
            build_model(iso_spec(body))
        assert needle in str(e.value), str(e.value)
        assert e.value.path is not None and e.value.path.startswith("blocks.t.body.0")


def test_values_from_block_options_are_located_at_the_spec(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent("""\
        layout: isotropic
        patch_size: 4
        dim: 8
        depth: 1
        heads: 2
        image_size: 16
        block: {type: t, r: -1}
        blocks:
          t:
            params: {r: 4.0}
            body:
              - {mlp: {ratio: $r}}
        """))
    with pytest.raises(SpecError) as e:
        build_model(str(p))
    assert e.value.path == "block.r" and (e.value.line, e.value.col) == (7, 18)
    assert "mlp ratio must be a number in (0.0, inf), got -1" in str(e.value)


def test_grid_variable_sizes_ape_per_stage():
    body = [{"posenc": {"type": "ape", "grid": "$grid"}, "name": "ape"}]
    m = build_model(hier_spec(body, dims=(8, 16, 32), depths=(1, 1, 1), heads=(1, 1, 1), image_size=40))
    # patch 2 stem: 40 -> 20, then 10, 5 (ceil) per stage
    assert [list(st.blocks[0].ape.grid) for st in m.stages] == [[20, 20], [10, 10], [5, 5]]
    assert nparams(m.stages[2].blocks[0].ape) == 5 * 5 * 32
    assert m(torch.randn(1, 3, 40, 40)).shape == (1, 3)
