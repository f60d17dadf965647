"""selective_scan through the small C++ CPU kernel (``selective_scan_cpu.cpp``).

The kernel is compiled on first use with ``torch.utils.cpp_extension.load`` (g++, -O3, OpenMP
on ``torch.get_num_threads()`` threads) into ``$ARCHDSL_EXTENSIONS_DIR`` (default
``~/.cache/archdsl/torch_extensions``) and reused from there; a build prints one line on stderr
first (it takes ~40 s; ``archdsl build-ext`` builds it ahead). ``ARCHDSL_NO_CPP=1`` disables it.
When it cannot be built, :func:`cpp_available` is False, :func:`cpp_build_error` says why, and
the dispatcher falls back to the pure-PyTorch chunked scan.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .._torch_logs import quiet_cpp_extension
from .common import check_args, compute_dtype

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
    with quiet_cpp_extension():
        from torch.utils import cpp_extension

    flags = _cpu_flags()
    # one build directory per (flags, source text, source path): checkouts with another kernel source,
    # or the same source elsewhere (ninja would rebuild for the new path), never rebuild each other's
    tag = hashlib.sha1("\0".join([*flags, _SOURCE.read_text(), str(_SOURCE.resolve())]).encode()).hexdigest()[:8]
    root = os.environ.get("ARCHDSL_EXTENSIONS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "archdsl", "torch_extensions"
    )
    name = f"archdsl_selective_scan_{tag}"
    build_dir = os.path.join(root, name)
    os.makedirs(build_dir, exist_ok=True)
    if not os.path.exists(os.path.join(build_dir, f"{name}.so")):  # say why the first call waits
        print("archdsl: compiling the C++ selective-scan kernel (once, ~40 s; `archdsl build-ext` builds it "
              f"ahead) into {build_dir} ...", file=sys.stderr, flush=True)
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
    """Fused forward out, h_L = kernel(u, delta, A, B, C, D, z, delta_bias, softplus).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, G, L, N) contiguous; D, delta_bias:
    (dim,) or None. The backward runs the C++ scan backward (gradients w.r.t. u, the processed
    delta, A, B, C given dL/dy) and does the prologue / epilogue gradients (delta_bias, softplus,
    D skip, silu(z) gate) in PyTorch. The same kernel runs with or without grad; with grad and a
    gate z it also returns the pre-gate scan output y, which the backward needs for dz.
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bm, Cm, D, z, bias, softplus):
        keep_y = z is not None and any(ctx.needs_input_grad)
        out, last, y = torch.ops.archdsl_selective_scan.fwd(u, delta, A, Bm, Cm, D, z, bias, softplus, keep_y)
        ctx.softplus = softplus
        ctx.save_for_backward(u, delta, A, Bm, Cm, D, z, bias, y if keep_y else None)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, Bm, Cm, D, z, bias, y = ctx.saved_tensors
        dout = torch.zeros_like(u) if dout is None else dout
        x = delta if bias is None else delta + bias.unsqueeze(-1)  # pre-softplus delta
        dp = F.softplus(x) if ctx.softplus else x
        dz = None
        if z is not None:
            sz = torch.sigmoid(z)
            dy = dout * (z * sz)  # dL/d(y + D u)
            if ctx.needs_input_grad[6]:
                pre = y if D is None else y + D.unsqueeze(-1) * u
                dz = dout * pre * (sz * (1 + z * (1 - sz)))  # silu'(z) = s (1 + z (1 - s))
        else:
            dy = dout
        dy = dy.contiguous()
        dlast = None if dlast is None else dlast.contiguous()
        du, ddp, dA, dB, dC = torch.ops.archdsl_selective_scan.bwd(u, dp.contiguous(), A, Bm, Cm, dy, dlast)
        dD = None
        if D is not None:
            du = du + dy * D.unsqueeze(-1)
            dD = (dy * u).sum((0, 2))
        ddelta = ddp * torch.sigmoid(x) if ctx.softplus else ddp
        dbias = ddelta.sum((0, 2)) if bias is not None else None
        return du, ddelta, dA, dB, dC, dD, dz, dbias, None


def selective_scan_cpp(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """Same contract as :func:`selective_scan_ref`, computed by the C++ kernel (CPU tensors).

    One fused kernel call does delta_bias, softplus, the scan, the D skip and the silu(z) gate on
    the (batch, dim, L) layout (fp32 and fp64); only B and C are transposed to (batch, G, L, N).
    """
    check_args(u, delta, A, B, C, D, z, delta_bias)
    if not _ensure():
        raise RuntimeError(f"the selective_scan C++ kernel is not available: {cpp_build_error()}")
    if u.device.type != "cpu":
        raise ValueError(f"the C++ selective_scan kernel runs on CPU tensors; got device {u.device}")
    dt = compute_dtype(u.dtype)

    def prep(t):
        return None if t is None else t.to(dt).contiguous()

    Bg = (B.unsqueeze(1) if B.dim() == 3 else B).to(dt).transpose(-1, -2).contiguous()  # (b,G,L,N)
    Cg = (C.unsqueeze(1) if C.dim() == 3 else C).to(dt).transpose(-1, -2).contiguous()
    out, last = _ScanFn.apply(
        prep(u), prep(delta), prep(A), Bg, Cg, prep(D), prep(z), prep(delta_bias), bool(delta_softplus)
    )
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out
