"""selective_scan with mamba_ssm's interface (docs/paper.md §6) and several backends.

Backends: "cuda" (mamba_ssm's kernel; CUDA tensors, when importable), "cpp" (our C++ CPU kernel,
compiled once and cached), "chunked" (pure PyTorch, any device), "ref" (sequential loop).
``backend="auto"`` (default) picks cuda > cpp > chunked for the tensors given; which one ran is
returned by :func:`last_backend` (recorded in :mod:`archdsl.ops.dispatch`), never hidden.
"""
from __future__ import annotations

from typing import Optional

import torch

from archdsl.ops import dispatch

from ..tracing import is_tracing
from .chunked import selective_scan_chunked
from .cpp import cpp_available, cpp_build_error, selective_scan_cpp
from .cuda import mamba_ssm_fn, selective_scan_cuda
from .naive import selective_scan_ref

BACKENDS = ("auto", "cuda", "cpp", "chunked", "ref")

__all__ = [
    "BACKENDS",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_chunked",
    "selective_scan_cpp",
    "selective_scan_backend",
    "last_backend",
    "cpp_available",
    "cpp_build_error",
]


def selective_scan_backend(device="cpu") -> str:
    """The backend ``backend="auto"`` uses for tensors on ``device`` (may build the C++ kernel);
    "chunked" while a tracer runs (the compiled kernels are opaque to torch.export / ONNX)."""
    dev = str(device)
    if is_tracing():
        return "chunked"
    if dev.startswith("cuda") and mamba_ssm_fn() is not None:
        return "cuda"
    if dev == "cpu" and cpp_available():
        return "cpp"
    return "chunked"


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    *,
    backend: str = "auto",
    chunk_size: int = 64,
):
    """Selective scan (Mamba S6), exactly mamba_ssm's ``selective_scan_fn`` semantics.

    delta += delta_bias; delta = softplus(delta) if delta_softplus;
    h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t B_t u_t ; y_t = C_t · h_t ; out = (y + D u) ⊙ silu(z).
    u, delta, z: (batch, dim, L); A: (dim, N) (negative); B, C: (batch, N, L) or
    (batch, groups, N, L) (channel d uses group d // (dim // groups)); D, delta_bias: (dim,).
    Computed in fp32 (fp64 stays fp64); ``out`` has u's dtype; with ``return_last_state`` also
    returns h_L: (batch, dim, N). ``backend``: one of BACKENDS; ``chunk_size`` for "chunked".
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective_scan backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if u.device.type == "meta" and backend == "auto":
        # shapes only (roofline and memory estimates): the kernel's cost is accounted per mixer
        # (archdsl.analysis.scan_macs), not by tracing a stand-in algorithm's ops
        out = torch.empty_like(u)
        return (out, u.new_empty(u.shape[0], u.shape[1], A.shape[-1])) if return_last_state else out
    name = selective_scan_backend(u.device) if backend == "auto" else backend
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == "cuda":
        out = selective_scan_cuda(*args)
        label = "cuda(mamba_ssm)"
    elif name == "cpp":
        out = selective_scan_cpp(*args)
        label = "cpp"
    elif name == "chunked":
        info: dict = {}
        out = selective_scan_chunked(*args, chunk_size=chunk_size, _info=info)
        label = f"chunked(T={info.get('chunk', chunk_size)})"
    else:
        out = selective_scan_ref(*args)
        label = "ref"
    dispatch.record("selective_scan", label)
    return out


def last_backend() -> Optional[str]:
    """Label of the backend the last :func:`selective_scan` call ran: 'cuda(mamba_ssm)', 'cpp',
    'chunked(T=..)' or 'ref' (None before the first call)."""
    return dispatch.last("selective_scan")
