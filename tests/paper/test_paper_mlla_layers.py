"""mlla_stem / mlla_merge: official key names, exact parameter counts, numerical equivalence with
the independent official-structure re-implementation, grids of odd sizes, config errors."""
import pytest
import torch
import torch.nn.functional as F
from official_mlla import PatchMerging, Stem, randomize_

from archdsl import registry
from archdsl.layers.mlla import MLLAMerge, MLLAStem


def test_registered():
    assert registry.get("stem", "mlla_stem") is MLLAStem
    assert registry.get("downsample", "mlla_merge") is MLLAMerge


@pytest.mark.parametrize("dim", [16, 64])
def test_stem_keys_params_and_outputs_match_official(dim):
    ref = randomize_(Stem(3, dim)).eval()
    ours = MLLAStem(3, dim).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert "conv2.1.norm.running_mean" in ours.state_dict()
    # conv1 3*(C/2)*9 + conv2 2*(C/2)^2*9 + conv3 (C/2)*4C*9 + 4C*C, BN 2 per channel
    h = dim // 2
    expected = 3 * h * 9 + 2 * h * h * 9 + h * 4 * dim * 9 + 4 * dim * dim + 2 * (h + h + h + 4 * dim + dim)
    assert sum(p.numel() for p in ours.parameters()) == expected
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 36, 28)  # odd token grid 9 x 7
    y, hw = ours(x)
    assert hw == (9, 7) and y.shape == (2, 63, dim)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=1e-5)


def test_merge_keys_params_and_outputs_match_official():
    ref = randomize_(PatchMerging((9, 7), 16)).eval()
    ours = MLLAMerge(16, 32).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    hid = 128  # 4 * dim_out
    expected = (16 * hid + hid) + (hid * 9 + hid) + (hid * 32 + 32) + 2 * 32
    assert sum(p.numel() for p in ours.parameters()) == expected
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 63, 16)
    y, hw = ours(x, (9, 7))
    assert hw == (5, 4) and y.shape == (2, 20, 32)
    # an odd grid is zero-padded to even first (10 x 8), as the official detection backbone does
    padded = F.pad(x.reshape(2, 9, 7, 16), (0, 0, 0, 1, 0, 1)).reshape(2, 80, 16)
    ref.res = (10, 8)
    torch.testing.assert_close(y, ref(padded), rtol=0, atol=1e-5)
    x = torch.randn(2, 80, 16)  # an even grid: no padding
    torch.testing.assert_close(ours(x, (10, 8))[0], ref(x), rtol=0, atol=1e-5)


def test_merge_ratio_option():
    m = MLLAMerge(8, 24, ratio=2.0)
    assert m.conv[0].conv.out_channels == 48 and m.conv[2].conv.out_channels == 24


@pytest.mark.parametrize("ctor,msg", [
    (lambda: MLLAStem(3, 15), "mlla_stem needs an even dim (it runs at dim/2 channels first), got 15"),
    (lambda: MLLAStem(3, 16, patch_size=8), "mlla_stem has a fixed patch size of 4"),
    (lambda: MLLAStem(0, 16), "in_chans must be a positive integer, got 0"),
    (lambda: MLLAMerge(8, 16, ratio=0), "ratio must be a positive number, got 0"),
    (lambda: MLLAMerge(8, -1), "dim_out must be a positive integer, got -1"),
])
def test_config_errors(ctor, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        ctor()


def test_stem_rejects_non_image():
    with pytest.raises(ValueError, match=r"expects images \[B, C, H, W\], got shape \(3, 32, 32\)"):
        MLLAStem(3, 16)(torch.randn(3, 32, 32))


# ---------------------------------------------------------------- MLLA's attention = linear_attention
from official_mlla import LinearAttention as OfficialLinearAttention  # noqa: E402


@pytest.mark.parametrize("heads,hw", [(1, (8, 8)), (2, (5, 7))], ids=["h1-8x8", "h2-5x7"])
def test_mlla_configuration_of_linear_attention_equals_official(heads, hw):
    dim = 16
    generic = registry.get("mixer", "linear_attention")(dim, heads, positional=["rope2d", "lepe"])
    assert list(generic.state_dict()) == ["qk.weight", "qk.bias", "lepe.weight", "lepe.bias"]
    x = torch.randn(3, hw[0] * hw[1], dim)
    y = generic(x, hw)
    ref = OfficialLinearAttention(dim, hw, heads)
    ref.load_state_dict({**generic.state_dict(), "rope.rotations": ref.rope.rotations})
    torch.testing.assert_close(y, ref(x), rtol=0, atol=1e-5)
    y.sum().backward()  # gradients flow to both parameters
    assert generic.qk.weight.grad.abs().sum() > 0 and generic.lepe.weight.grad.abs().sum() > 0
