"""measure_throughput: result fields, settings echoed, spread ordering, train step, OOM recording.

Not a timed test: the model is tiny and only the structure / sanity of the figures is checked."""
import pytest
import torch
from torch import nn

from archdsl.analysis import benchmark
from archdsl.analysis.benchmark import measure_throughput


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))


def test_inference_result_fields_and_figures():
    m = _tiny()
    r = measure_throughput(m, batch_size=2, image_size=16, warmup=1, iters=3, min_time=0.0)
    assert r["error"] is None
    assert r["batch_size"] == 2 and r["image_size"] == [16, 16] and r["device"] == "cpu"
    assert r["dtype"] == "float32" and r["mode"] == "inference" and r["channels_last"] is False
    assert r["timed_iters"] == 3
    assert r["params"] == sum(p.numel() for p in m.parameters())
    assert 0 < r["p20_ms"] <= r["latency_ms"] <= r["p80_ms"]
    assert r["images_per_s"] == pytest.approx(2 / (r["latency_ms"] / 1e3))
    assert r["peak_memory_mib"] > 0 and r["peak_memory_delta_mib"] >= 0
    assert "ru_maxrss" in r["memory_method"]
    assert not m.training  # eval mode


def test_min_time_extends_iterations():
    r = measure_throughput(_tiny(), batch_size=1, image_size=8, warmup=0, iters=1, min_time=0.05,
                           max_iters=10**7)
    assert r["total_time_s"] >= 0.05
    # more than one timed step unless one step alone already took min_time (a loaded machine)
    assert r["timed_iters"] > 1 or r["latency_ms"] >= 50
    capped = measure_throughput(_tiny(), batch_size=1, image_size=8, warmup=0, iters=1, min_time=60.0, max_iters=3)
    assert capped["timed_iters"] == 3  # max_iters bounds a long min_time


def test_train_step_updates_weights_and_channels_last():
    m = _tiny()
    w0 = m[0].weight.detach().clone()
    r = measure_throughput(m, batch_size=2, image_size=16, warmup=1, iters=2, min_time=0.0, train=True,
                           channels_last=True, dtype="float32")
    assert r["mode"] == "train" and r["channels_last"] is True and r["error"] is None
    assert not torch.equal(w0, m[0].weight.detach())


def test_oom_recorded_not_raised():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 TiB")

    r = measure_throughput(Boom(), batch_size=1, image_size=8, warmup=1, iters=1)
    assert r["error"].startswith("oom: CUDA out of memory") and r["images_per_s"] is None


def test_other_errors_raise_and_bad_args():
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure_throughput(Bad(), batch_size=1, image_size=8, warmup=0, iters=1)
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        measure_throughput(_tiny(), batch_size=1, image_size=8, dtype="float8")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        measure_throughput(_tiny(), batch_size=0, image_size=8)


def test_dtype_names():
    assert benchmark.DTYPES["bfloat16"] is torch.bfloat16
