"""The roofline throughput model: hand-computed times for one matmul and one depthwise convolution,
profiles (presets, calibrated files, errors) and the search predicting instead of measuring."""
from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from archdsl.analysis.roofline import (
    DeviceProfile,
    load_profile,
    predict,
    predict_model,
    preset_names,
    record_ops,
)
from archdsl.cli import main
from archdsl.errors import SpecError

PROFILE = DeviceProfile("test", {"float32": 1e9, "bfloat16": 4e9}, bandwidth=1e8, launch_s=1e-6)


def test_single_matmul_matches_the_hand_computation():
    ops = record_ops(nn.Linear(64, 32, bias=False), (8, 64))
    assert [(o.name, o.flops, o.bytes) for o in ops] == [("mm", 2 * 8 * 64 * 32, 4 * (8 * 64 + 64 * 32 + 8 * 32))]
    # memory bound here: bytes / bandwidth > flops / peak
    seconds = max(2 * 8 * 64 * 32 / 1e9, 4 * (8 * 64 + 64 * 32 + 8 * 32) / 1e8) + 1e-6
    got = predict(ops, PROFILE, batch_size=8)
    assert got["seconds"] == pytest.approx(seconds, rel=1e-12)
    assert got["images_per_s"] == pytest.approx(8 / seconds, rel=1e-12)
    assert got["memory_bound_s"] > 0 and got["compute_bound_s"] == 0
    fast_memory = DeviceProfile("t2", {"float32": 1e9}, bandwidth=1e12, launch_s=0.0)
    assert predict(ops, fast_memory, 8)["seconds"] == pytest.approx(2 * 8 * 64 * 32 / 1e9, rel=1e-12)
    assert predict(ops, PROFILE, 8, dtype="bfloat16")["compute_bound_s"] == 0   # bf16 peak, still memory bound


def test_depthwise_conv_matches_the_hand_computation():
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    ops = record_ops(conv, (2, 16, 8, 8))
    flops = 2 * (2 * 16 * 8 * 8) * (3 * 3 * 16 // 16)          # 2 x outputs x (k*k*C_in/groups)
    nbytes = 4 * (2 * 16 * 8 * 8 + 16 * 1 * 3 * 3 + 2 * 16 * 8 * 8)   # input + weight + output
    assert [(o.name, o.flops, o.bytes) for o in ops] == [("convolution", flops, nbytes)]
    got = predict_model(conv, PROFILE, batch_size=2, image_size=8, in_chans=16)
    assert got["seconds"] == pytest.approx(max(flops / 1e9, nbytes / 1e8) + 1e-6, rel=1e-12)


def test_views_move_nothing_and_the_model_is_not_touched():
    class M(nn.Module):
        def forward(self, x):
            return x.transpose(1, 2).reshape(x.shape[0], -1).contiguous()

    ops = record_ops(M(), (2, 3, 4))
    assert [o.name for o in ops] == ["clone"] and ops[0].bytes == 2 * 4 * 2 * 3 * 4   # the copy only
    lin = nn.Linear(4, 4)
    record_ops(lin, (1, 4))
    assert lin.weight.device.type == "cpu" and not lin.weight.isnan().any()


def test_mlla_t_flops_are_the_papers():
    import archdsl

    model = archdsl.build_model("specs/mlla_t.yaml", device="meta")
    ops = record_ops(model, (1, 3, 224, 224))
    assert sum(o.flops for o in ops) / 2 == pytest.approx(4.13e9, rel=0.01)   # 4.13 GMACs (docs/paper.md §3)


def test_presets_load_and_bad_profiles_are_located(tmp_path):
    assert {"rtx3090", "a100", "h100", "h200"} <= set(preset_names())
    h200, h100 = load_profile("h200"), load_profile("h100")
    assert h200.bandwidth > h100.bandwidth and h200.peak_flops == h100.peak_flops
    with pytest.raises(SpecError, match=r"unknown device profile 'rtx390' \(did you mean 'rtx3090'\?\)"):
        load_profile("rtx390")
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\npeak_flops: {float32: -1}\nbandwidth: 1e9\nlaunch_s: 0\n")
    with pytest.raises(SpecError, match=r"p.yaml:2:14: peak_flops.float32: must be a positive number, got -1"):
        load_profile(str(bad))


def test_calibrate_writes_a_profile_the_model_reads(tmp_path, capsys):
    out = tmp_path / "cpu.yaml"
    assert main(["calibrate", "--out", str(out), "--gemm-n", "64", "--copy-mib", "1", "--min-time", "0.01",
                 "--dtypes", "float32"]) == 0
    prof = load_profile(str(out))
    assert prof.peak_flops["float32"] > 1e6 and prof.bandwidth > 1e6 and 0 < prof.launch_s < 1e-2
    assert "archdsl calibrate on" in prof.source and "GFLOP/s" in capsys.readouterr().err
    got = predict_model(nn.Linear(64, 32), prof, batch_size=4, image_size=(1, 64), in_chans=1)
    assert got["images_per_s"] > 0 and got["profile"] == "calibrated-cpu"
    assert main(["calibrate", "--out", str(out), "--dtypes", "bfloat16"]) == 2   # float32 is required


def test_search_predicts_throughput_for_another_device(tmp_path):
    from archdsl.search.runner import run_search

    space = Path(__file__).parents[1] / "search" / "tiny_space.yaml"
    summary = run_search(space=str(space), budget=2, epochs=1, out_dir=str(tmp_path), progress=False,
                         log=lambda s: None, throughput_model="roofline:rtx3090")
    done = [t for t in summary["trials"] if t.state.name == "COMPLETE"]
    assert done
    for t in done:
        assert t.user_attrs["throughput_setup"]["mode"] == "roofline"
        assert t.user_attrs["throughput_setup"]["profile"] == "rtx3090"
    with pytest.raises(ValueError, match="--throughput-model must be 'measure' or 'roofline:NAME'"):
        run_search(space=str(space), budget=1, out_dir=str(tmp_path / "b"), progress=False, log=lambda s: None,
                   throughput_model="guess")


def test_a_recurrent_scan_is_one_op_with_the_registered_cost():
    """On meta the scan runs no stand-in algorithm: it is one op costed like the fused kernel."""
    from archdsl.analysis.scan_macs import SCAN_MACS_PER_ELEMENT
    from archdsl.layers.mixers.selective_ssm import SelectiveSSM

    class Tokens(nn.Module):                       # [B, N, C] input on a 4x4 grid
        def __init__(self):
            super().__init__()
            self.mixer = SelectiveSSM(8, 1, d_state=4)

        def forward(self, x):
            return self.mixer(x, (4, 4))

    model = Tokens()
    ops = record_ops(model, (2, 16, 8))
    scans = [o for o in ops if o.name == "selective_scan"]
    dirs = len(model.mixer.directions)
    assert len(scans) == 1
    assert scans[0].flops == 2 * SCAN_MACS_PER_ELEMENT * 16 * model.mixer.dim * 4 * dirs * 2
    assert scans[0].bytes == 6 * 2 * 16 * 8 * 4
    assert not any(o.name == "cumsum" for o in ops)      # the chunked stand-in (cumulative decays) was not traced
