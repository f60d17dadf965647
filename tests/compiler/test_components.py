"""Generic stems, downsamplers and heads: parameter counts, shapes, odd grids, numerics."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from compiler_helpers import nparams

from archdsl import registry


def test_patch_embed_pads_and_norms():
    pe = registry.get("stem", "patch_embed")(3, 8, patch_size=4, norm=True)
    assert nparams(pe) == 3 * 8 * 16 + 8 + 16 and pe.reduction == 4
    img = torch.randn(2, 3, 10, 13)
    x, hw = pe(img)
    assert hw == (3, 4) and x.shape == (2, 12, 8)
    ref = F.conv2d(F.pad(img, (0, 3, 0, 2)), pe.proj.weight, pe.proj.bias, stride=4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(x, F.layer_norm(ref, (8,), pe.norm.weight, pe.norm.bias))


def test_conv_stem():
    st = registry.get("stem", "conv_stem")(3, 16)
    # conv 3x3 3->8 (no bias) + BN(8), conv 3x3 8->16 (no bias) + BN(16)
    assert nparams(st) == 3 * 8 * 9 + 16 + 8 * 16 * 9 + 32 and st.reduction == 4
    x, hw = st(torch.randn(1, 3, 32, 20))
    assert hw == (8, 5) and x.shape == (1, 40, 16)


def test_patch_merging_is_swin_order_and_pads_odd_grids():
    pm = registry.get("downsample", "patch_merging")(4, 8)
    assert nparams(pm) == 2 * 16 + 16 * 8
    x = torch.randn(2, 3 * 5, 4)
    y, hw = pm(x, (3, 5))
    assert hw == (2, 3) and y.shape == (2, 6, 8)
    g = F.pad(x.view(2, 3, 5, 4), (0, 0, 0, 1, 0, 1))                   # [2, 4, 6, 4]
    cat = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1).reshape(2, 6, 16)
    ref = F.linear(F.layer_norm(cat, (16,), pm.norm.weight, pm.norm.bias), pm.reduction.weight)
    torch.testing.assert_close(y, ref)


def test_conv_downsample():
    cd = registry.get("downsample", "conv_downsample")(4, 8, norm="batchnorm")
    assert nparams(cd) == 4 * 8 * 9 + 8 + 16
    y, hw = cd(torch.randn(1, 7 * 5, 4), (7, 5))
    assert hw == (4, 3) and y.shape == (1, 12, 8)
    assert registry.get("downsample", "conv_downsample")(4, 8, norm="none").norm is None


def test_heads():
    h = registry.get("head", "norm_pool_linear")(8, 5, drop=0.0)
    assert nparams(h) == 16 + 8 * 5 + 5
    x = torch.randn(2, 6, 8)
    ref = F.linear(F.layer_norm(x, (8,), h.norm.weight, h.norm.bias).mean(1), h.fc.weight, h.fc.bias)
    torch.testing.assert_close(h(x, (2, 3)), ref)
    p = registry.get("head", "pool_linear")(8, 0)            # num_classes 0: pooled features
    assert nparams(p) == 0
    torch.testing.assert_close(p(x, (2, 3)), x.mean(1))
