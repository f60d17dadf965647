"""count_params / count_macs / summarize: MACs of a tiny linear-only model computed by hand."""
from __future__ import annotations

import pytest
from compiler_helpers import iso_spec

from archdsl.analysis.summary import count_macs, count_params, summarize
from archdsl.compiler import build_model


def linear_only():
    # patch_embed 4x4 (no norm) on 8x8 -> 2x2 = 4 tokens of width 8; one block {linear: 8}; pool_linear head (3)
    return build_model(iso_spec([{"linear": 8}], dim=8, image_size=8, patch_size=4, num_classes=3,
                                head="pool_linear"))


def test_macs_by_hand():
    m = linear_only()
    stem = 4 * 8 * (3 * 4 * 4)       # output positions x out channels x (in channels x kernel area)
    block = 4 * 8 * 8                # tokens x in x out
    head = 8 * 3                     # pooled features x classes (the mean itself is not counted)
    assert count_macs(m, 8) == stem + block + head == 1816
    assert count_macs(m) == 1816                        # default: model.default_input_size
    assert count_macs(m, (16, 8)) == 2 * (stem + block) + head
    assert count_params(m) == (3 * 8 * 16 + 8) + (8 * 8 + 8) + (8 * 3 + 3)


def test_summary_rows_add_up():
    m = build_model(iso_spec(["identity", {"mixer": "$mixer"}], dim=8, depth=2, image_size=16, patch_size=4,
                             posenc="ape"))
    s = summarize(m, 16)
    names = [r["name"] for r in s["rows"]]
    assert names == ["stem", "pos_embed", "stage0", "head"]
    assert sum(r["params"] for r in s["rows"]) == s["params"] == count_params(m)
    assert sum(r["macs"] for r in s["rows"]) == s["macs"] == count_macs(m, 16)
    assert s["rows"][2]["output_shape"] == [1, 16, 8]
    assert s["input_shape"] == [1, 3, 16, 16] and s["output_shape"] == [1, 3]


def test_summary_hierarchical_rows_and_training_mode_kept():
    from compiler_helpers import hier_spec

    m = build_model(hier_spec(["identity"], dims=(8, 16), depths=(1, 1), heads=(1, 1)))
    m.train()
    s = summarize(m, 16)
    assert [r["name"] for r in s["rows"]] == ["stem", "stage0", "downsample0", "stage1", "head"]
    assert s["rows"][2]["output_shape"] == [1, 16, 16]    # 8x8 grid -> 4x4, width 16
    assert m.training                                     # summarize restores the mode
    with pytest.raises(ValueError, match="input_size must be"):
        count_macs(m, (1, 2, 3, 4))


def test_macs_on_meta_equal_real():
    from pathlib import Path

    tiny = str(Path(__file__).parent / "specs" / "tiny_child.yaml")
    real, meta = build_model(tiny), build_model(tiny, device="meta")
    assert count_macs(meta, 32) == count_macs(real, 32) > 0
    assert count_params(meta) == count_params(real)


def test_cpu_sdpa_is_counted_like_on_meta():
    """FlopCounterMode has no formula for the CPU SDPA kernel; summary registers one so a CPU count
    equals the meta-device count: q·kᵀ and p·v, 2·B·H·L·S·E FLOPs each."""
    import torch
    import torch.nn.functional as F

    from archdsl.analysis.summary import _flops

    B, H, L, E = 1, 2, 16, 8
    for device in ("cpu", "meta"):
        q = torch.randn(B, H, L, E, device=device)
        _, flops = _flops(F.scaled_dot_product_attention, q, q, q)
        assert flops == 2 * (2 * B * H * L * L * E), device
