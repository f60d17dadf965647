"""Throughput / latency / memory measurement (timm's benchmark methodology, with a spread).

``measure_throughput(model, batch_size=..., image_size=...)`` runs the model on random images:

1. the model is moved to ``device``/``dtype`` (and ``channels_last`` memory format if asked) and put in
   ``eval()`` mode (``train()`` for ``train=True``);
2. ``warmup`` untimed iterations (forward under ``torch.inference_mode``; or a full training step);
3. timed iterations, each one timed on its own with ``torch.utils.benchmark``'s clock (it synchronises
   the accelerator before reading the time) until both ``iters`` iterations and ``min_time`` seconds are reached (capped at ``max_iters``);
4. the result reports the **median** per-iteration time with its p20/p80 spread (numpy percentiles); images/s is
   ``batch_size / median``; latency is the median in ms.

Peak memory: CUDA -> ``torch.cuda.max_memory_allocated`` (reset before warm-up, bytes held by
tensors); CPU -> the process peak resident set size from ``resource.getrusage(...).ru_maxrss`` and its
growth during this measurement (``peak_memory_delta_mib``; 0 when an earlier peak of the process was
already higher, since ru_maxrss cannot be reset). The method is echoed in ``memory_method``.

An out-of-memory error is recorded in the ``error`` field (``"oom: ..."``) instead of raising.
"""
from __future__ import annotations

import platform
import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from archdsl.ops._torch_logs import quiet_cpp_extension

with quiet_cpp_extension():   # torch.utils.benchmark imports torch.utils.cpp_extension
    from torch.utils.benchmark import Timer
    from torch.utils.benchmark.utils.timer import timer as synced_clock  # syncs the accelerator first

__all__ = ["measure_throughput", "DTYPES", "Timer", "synced_clock"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _rss_peak_mib() -> Optional[float]:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    msg = str(e).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "defaultcpuallocator" in msg


def _settings(model: nn.Module, dev: torch.device, dtype: torch.dtype, hw: Tuple[int, int], **echo: Any) -> Dict[str, Any]:
    """The result dict with the settings echoed and every figure still None."""
    dtype_name = next((k for k, v in DTYPES.items() if v == dtype), str(dtype))
    result: Dict[str, Any] = {
        "batch_size": echo.pop("batch_size"), "image_size": list(hw), "in_chans": echo.pop("in_chans"),
        "device": str(dev), "dtype": dtype_name, "channels_last": echo.pop("channels_last"),
        "mode": "train" if echo.pop("train") else "inference", **echo,
        "num_threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "torch": torch.__version__, "machine": platform.machine(),
        "params": sum(p.numel() for p in model.parameters()),
        "images_per_s": None, "latency_ms": None, "p20_ms": None, "p80_ms": None, "mean_ms": None,
        "timed_iters": 0, "total_time_s": None, "peak_memory_mib": None,
        "memory_method": ("cuda: torch.cuda.max_memory_allocated during the timed run" if dev.type == "cuda"
                          else "cpu: process peak RSS from resource.ru_maxrss (delta = growth during "
                               "this measurement, 0 if an earlier peak was higher)"),
        "error": None,
    }
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
    return result


def _make_step(model: nn.Module, x: torch.Tensor, *, train: bool, compile: bool) -> Callable[[], None]:
    """One timed unit: an inference forward (``eval`` + ``inference_mode``) or a full training step
    (forward, cross-entropy against random labels, backward, ``AdamW.step``, ``zero_grad``)."""
    run_model: Callable = torch.compile(model) if compile else model
    if not train:
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                run_model(x)

        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target: Optional[torch.Tensor] = None

    def step() -> None:
        nonlocal target
        out = run_model(x)
        if target is None:
            target = torch.randint(0, out.shape[-1], (x.shape[0],), device=x.device)
        nn.functional.cross_entropy(out.float(), target).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _time_steps(step: Callable[[], None], *, warmup: int, iters: int, min_time: float,
                max_iters: int) -> Tuple[List[float], float]:
    """-> (seconds per step, total seconds): ``warmup`` untimed steps, then steps timed one by one with
    torch.utils.benchmark's clock (it synchronises the accelerator) until ``iters`` steps and
    ``min_time`` seconds are both reached, at most ``max_iters``."""
    for _ in range(warmup):
        step()
    times: List[float] = []
    t_start = synced_clock()
    while len(times) < max_iters and (len(times) < iters or synced_clock() - t_start < min_time):
        t0 = synced_clock()
        step()
        times.append(synced_clock() - t0)
    return times, synced_clock() - t_start


def _figures(times: List[float], total: float, batch_size: int) -> Dict[str, Any]:
    med = statistics.median(times)
    p20, p80 = np.percentile(times, [20, 80])
    return {"images_per_s": batch_size / med, "latency_ms": med * 1e3, "p20_ms": float(p20) * 1e3,
            "p80_ms": float(p80) * 1e3, "mean_ms": statistics.fmean(times) * 1e3, "timed_iters": len(times),
            "total_time_s": total}


def measure_throughput(  # over 60 lines only through its signature and docstring: the steps are helpers
    model: nn.Module,
    *,
    batch_size: int,
    image_size: int | tuple = 224,
    in_chans: int = 3,
    device: str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    channels_last: bool = False,
    warmup: int = 5,
    iters: int = 10,
    min_time: float = 1.0,
    max_iters: int = 1000,
    train: bool = False,
    num_threads: Optional[int] = None,
    compile: bool = False,
) -> Dict[str, Any]:
    """Time ``model`` on random ``[batch_size, in_chans, H, W]`` images.

    Returns a dict with the settings echoed (``batch_size, image_size, device, dtype, channels_last,
    mode, warmup, iters, min_time, num_threads, compile, torch``) and the figures: ``images_per_s``
    (batch / median time), ``latency_ms`` (median), ``p20_ms``, ``p80_ms``, ``mean_ms``,
    ``timed_iters``, ``total_time_s``, ``peak_memory_mib`` (+ ``peak_memory_delta_mib`` on CPU),
    ``memory_method``, and ``error`` (None, or the recorded failure, e.g. ``"oom: ..."``).

    ``train=True`` times a full training step: forward, cross-entropy against random labels,
    backward, ``AdamW.step()`` and ``zero_grad``. Inference uses ``eval()`` + ``inference_mode``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if num_threads is not None and dev.type == "cpu":
        torch.set_num_threads(num_threads)
    result = _settings(model, dev, dtype, hw, batch_size=batch_size, in_chans=in_chans, channels_last=channels_last,
                       train=train, warmup=warmup, iters=iters, min_time=min_time, compile=compile)
    rss_before = _rss_peak_mib()
    try:
        mf = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(device=dev, dtype=dtype).to(memory_format=mf)
        x = torch.randn(batch_size, in_chans, *hw, device=dev, dtype=dtype).contiguous(memory_format=mf)
        step = _make_step(model, x, train=train, compile=compile)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times, total = _time_steps(step, warmup=warmup, iters=iters, min_time=min_time, max_iters=max_iters)
    except (RuntimeError, MemoryError) as e:
        if not _is_oom(e):
            raise
        result["error"] = f"oom: {str(e).splitlines()[0][:200]}"
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return result
    result.update(_figures(times, total, batch_size))
    if dev.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        rss_after = _rss_peak_mib()
        result["peak_memory_mib"] = rss_after
        if rss_after is not None and rss_before is not None:
            result["peak_memory_delta_mib"] = max(0.0, rss_after - rss_before)
    return result
