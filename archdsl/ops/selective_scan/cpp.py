"""selective_scan through the small C++ CPU kernel (``selective_scan_cpu.cpp``).

The kernel is compiled on first use with ``torch.utils.cpp_extension.load`` (g++, -O3, OpenMP
on ``torch.get_num_threads()`` threads) into ``$ARCHDSL_EXTENSIONS_DIR`` (default
``~/.cache/archdsl/torch_extensions``) and reused from there. ``ARCHDSL_NO_CPP=1`` disables it.
When it cannot be built, :func:`cpp_available` is False, :func:`cpp_build_error` says why, and
the dispatcher falls back to the pure-PyTorch chunked scan.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Optional

import torch

from .common import check_args, compute_dtype, finish, prepare_delta

_SOURCE = Path(__file__).with_name("selective_scan_cpu.cpp")
_lock = threading.Lock()
_state: dict = {"loaded": False, "error": None}


def _cpu_flags() -> list[str]:
    flags = ["-O3", "-fopenmp", "-Wno-psabi"]
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    if " avx2 " in info and " fma " in info:
        flags += ["-mavx2", "-mfma"]
        if " avx512f " in info:  # 16-channel vectors in the float forward
            flags += ["-mavx512f"]
    return flags


def _build() -> None:
    # cpp_extension logs "No CUDA runtime is found" on import on CPU-only machines: irrelevant here.
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        log.setLevel(level)

    flags = _cpu_flags()
    tag = hashlib.sha1(" ".join(flags).encode()).hexdigest()[:8]
    root = os.environ.get("ARCHDSL_EXTENSIONS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "archdsl", "torch_extensions"
    )
    name = f"archdsl_selective_scan_{tag}"
    build_dir = os.path.join(root, name)
    os.makedirs(build_dir, exist_ok=True)
    cpp_extension.load(
        name=name,
        sources=[str(_SOURCE)],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"],
        build_directory=build_dir,
        is_python_module=False,
        verbose=False,
    )


def _ensure() -> bool:
    if _state["loaded"]:
        return True
    if _state["error"] is not None:
        return False
    with _lock:
        if _state["loaded"] or _state["error"] is not None:
            return _state["loaded"]
        if os.environ.get("ARCHDSL_NO_CPP", "") not in ("", "0"):
            _state["error"] = "disabled by ARCHDSL_NO_CPP"
            return False
        try:
            _build()
            torch.ops.archdsl_selective_scan.fwd  # noqa: B018 - raises if the library did not load
            _state["loaded"] = True
        except Exception as e:  # no compiler, headers, ... -> fall back
            _state["error"] = f"{type(e).__name__}: {e}"[:2000]
    return _state["loaded"]


def cpp_available() -> bool:
    """True when the C++ kernel is (or can now be) compiled and loaded. Builds on first call."""
    return _ensure()


def cpp_build_error() -> Optional[str]:
    """Why the C++ kernel is unavailable (None when it loaded or was not tried yet)."""
    return _state["error"]


class _ScanFn(torch.autograd.Function):
    """Core scan y = scan(u, delta, A, B, C) with last state; B, C: (batch, G, L, N) contiguous."""

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm):
        y, last = torch.ops.archdsl_selective_scan.fwd(u, delta, A, Bm, Cm)
        ctx.save_for_backward(u, delta, A, Bm, Cm)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, Bm, Cm = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        dlast = None if dlast is None else dlast.contiguous()
        du, ddelta, dA, dB, dC = torch.ops.archdsl_selective_scan.bwd(u, delta, A, Bm, Cm, dy, dlast)
        return du, ddelta, dA, dB, dC


def selective_scan_cpp(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """Same contract as :func:`selective_scan_ref`, computed by the C++ kernel (CPU tensors)."""
    check_args(u, delta, A, B, C, D, z, delta_bias)
    if not _ensure():
        raise RuntimeError(f"the selective_scan C++ kernel is not available: {cpp_build_error()}")
    if u.device.type != "cpu":
        raise ValueError(f"the C++ selective_scan kernel runs on CPU tensors; got device {u.device}")
    dt = compute_dtype(u.dtype)
    d = prepare_delta(delta, delta_bias, delta_softplus, dt).contiguous()
    Bg = (B.unsqueeze(1) if B.dim() == 3 else B).to(dt).transpose(-1, -2).contiguous()  # (b,G,L,N)
    Cg = (C.unsqueeze(1) if C.dim() == 3 else C).to(dt).transpose(-1, -2).contiguous()
    y, last = _ScanFn.apply(u.to(dt).contiguous(), d, A.to(dt).contiguous(), Bg, Cg)
    out = finish(y, u, D, z, u.dtype)
    return (out, last) if return_last_state else out

