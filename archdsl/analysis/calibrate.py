"""Measure a :class:`~archdsl.analysis.roofline.DeviceProfile` of this machine (``archdsl calibrate``).

Three figures, each the median of ``torch.utils.benchmark`` blocked runs on the device, with the
thread count the search will use:

* ``peak_flops[dtype]``: a square matrix product of side ``gemm_n`` (2·n³ FLOPs) per dtype;
* ``bandwidth``: a copy of ``copy_mib`` MiB (read + write = 2x the size in bytes moved);
* ``launch_s``: the time per op of a stack of tiny ``nn.Linear`` layers run as a model (framework
  overhead per kernel as a model sees it, not a bare C++ call).
"""
from __future__ import annotations

import platform

import torch
from torch import nn

from archdsl.analysis.benchmark import Timer
from archdsl.analysis.roofline import DTYPE_NAMES, DeviceProfile, record_ops

__all__ = ["calibrate"]


def _median_s(stmt: str, env: dict, min_run_time: float) -> float:
    timer = Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _gemm_flops(device: torch.device, dtype: torch.dtype, n: int, min_run_time: float) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    return 2.0 * n ** 3 / _median_s("torch.mm(a, b)", {"torch": torch, "a": a, "b": b}, min_run_time)


def _bandwidth(device: torch.device, mib: float, min_run_time: float) -> float:
    n = int(mib * 2 ** 20 / 4)
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    dst.copy_(src)
    return 2.0 * n * 4 / _median_s("dst.copy_(src)", {"src": src, "dst": dst}, min_run_time)


def _launch(device: torch.device, min_run_time: float, layers: int = 32) -> float:
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(layers)]).to(device).eval()
    x = torch.randn(1, 8, device=device)
    n_ops = len(record_ops(model, (1, 8)))

    def run() -> None:
        with torch.inference_mode():
            model(x)

    run()
    return _median_s("run()", {"run": run}, min_run_time) / n_ops


def calibrate(device: str = "cpu", *, dtypes: tuple = ("float32", "bfloat16"), gemm_n: int = 1024,
              copy_mib: float = 64.0, min_run_time: float = 0.3, name: str | None = None) -> DeviceProfile:
    """Measure this machine's profile on ``device`` with the current torch thread count."""
    dev = torch.device(device)
    by_name = {v: k for k, v in DTYPE_NAMES.items()}
    unknown = [d for d in dtypes if d not in by_name]
    if unknown or "float32" not in dtypes:
        raise ValueError(f"dtypes must include float32 and be among {', '.join(by_name)}, got {list(dtypes)}")
    peaks = {d: _gemm_flops(dev, by_name[d], gemm_n, min_run_time) for d in dtypes}
    what = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    threads = f", {torch.get_num_threads()} thread(s)" if dev.type == "cpu" else ""
    return DeviceProfile(
        name=name or f"calibrated-{dev.type}",
        peak_flops=peaks,
        bandwidth=_bandwidth(dev, copy_mib, min_run_time),
        launch_s=_launch(dev, min_run_time),
        source=f"archdsl calibrate on {what}{threads}, torch {torch.__version__} (gemm n={gemm_n}, copy {copy_mib} MiB)",
        extra={"device": str(dev), "threads": torch.get_num_threads() if dev.type == "cpu" else None},
    )
