"""Predict images/s on a device from per-op FLOPs and bytes moved (a roofline per op).

The model runs once on the ``meta`` device (no memory, no compute) at the batch size asked for, under
a dispatch mode that records every ATen op: its FLOPs (``torch.utils.flop_counter``'s formulas:
matmul, convolution, attention) and the bytes of its tensor inputs and outputs. View ops (``t``,
``view``, ``permute``, ...) move no data and are skipped. Against a :class:`DeviceProfile`::

    time(op) = max(flops / peak_flops[dtype], bytes / bandwidth) + launch_s
    images/s = batch / sum(time(op))

This is the classic roofline with a fixed per-kernel cost: it ignores fusion, caches and kernel
quality, so it ranks architectures rather than predicting an exact figure. Profiles are YAML files:
the presets in ``archdsl/analysis/devices/`` come from vendor data sheets (with the fraction of the
peak a well-tuned kernel reaches), ``archdsl calibrate`` measures the current machine.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from archdsl.analysis.scan_macs import scan_cost
from archdsl.errors import SpecError, did_you_mean
from archdsl.files import write_atomic
from archdsl.language.schema import locate_in
from archdsl.language.yaml_loader import load_yaml_file, parse_path

__all__ = ["DeviceProfile", "OpRecord", "load_profile", "save_profile", "preset_names", "record_ops",
           "predict", "predict_model"]

PRESET_DIR = Path(__file__).resolve().parent / "devices"
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@dataclass
class DeviceProfile:
    """What the roofline needs of a device. ``peak_flops``: dtype name -> FLOP/s reached by large
    matrix products; ``bandwidth``: bytes/s reached by large copies; ``launch_s``: fixed cost per op."""

    name: str
    peak_flops: Dict[str, float]
    bandwidth: float
    launch_s: float
    source: str = ""                       # data sheet, or "calibrated on <machine>"
    extra: Dict[str, Any] = field(default_factory=dict)

    def flops_for(self, dtype: str) -> float:
        if dtype in self.peak_flops:
            return float(self.peak_flops[dtype])
        return float(self.peak_flops["float32"])


def preset_names() -> List[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A preset by name (``rtx3090``, ``a100``, ``h100``, ``h200``) or a profile file written by
    ``archdsl calibrate``. Raises :class:`SpecError` naming the file and the bad field."""
    path = Path(name_or_path)
    if not path.suffix:
        if str(name_or_path) not in preset_names():
            raise SpecError(f"unknown device profile '{name_or_path}'{did_you_mean(str(name_or_path), preset_names())}; "
                            f"presets: {', '.join(preset_names())}, or a file from `archdsl calibrate`")
        path = PRESET_DIR / f"{name_or_path}.yaml"
    data, positions = load_yaml_file(path, display=str(path))
    fields = [f.name for f in dataclasses.fields(DeviceProfile)]
    for key in data:
        if key not in fields:
            raise SpecError(f"unknown key '{key}'{did_you_mean(str(key), fields)}; expected {', '.join(fields)}",
                            **locate_in(positions, (key,), str(path)))
    try:
        prof = DeviceProfile(**data)
    except TypeError as e:
        raise SpecError(f"bad device profile: {e}", file=str(path)) from None
    _check_profile(prof, lambda key: locate_in(positions, parse_path(key), str(path)))
    return prof


def _check_profile(prof: DeviceProfile, locate: Any) -> None:
    if not isinstance(prof.peak_flops, dict) or "float32" not in prof.peak_flops:
        raise SpecError("peak_flops needs a float32 entry", **locate("peak_flops"))
    numbers = {f"peak_flops.{k}": v for k, v in prof.peak_flops.items()}
    numbers.update(bandwidth=prof.bandwidth, launch_s=prof.launch_s)
    for key, v in numbers.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                v == 0 and key != "launch_s"):
            raise SpecError(f"must be a positive number, got {v!r}", **locate(key))


def save_profile(prof: DeviceProfile, path: str | Path) -> None:
    """Write ``prof`` as YAML atomically (a temporary file, then ``os.replace``)."""
    write_atomic(path, yaml.safe_dump(asdict(prof), sort_keys=False), suffix=".yaml")


@dataclass
class OpRecord:
    """One ATen op of a forward pass: its name, FLOPs and bytes read + written."""

    name: str
    flops: float
    bytes: float


def _nbytes(tensors: List[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: List[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket not in flop_registry:       # composite ops (linear, conv2d) -> their kernels
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if func.is_view or func._overloadpacket in _FREE:
            return out
        fn = flop_registry.get(func._overloadpacket)
        flops = float(fn(*args, **kwargs, out_val=out)) if fn is not None else 0.0
        moved = _nbytes(tree_flatten((args, kwargs))[0]) + _nbytes(tree_flatten(out)[0])
        self.ops.append(OpRecord(str(func._overloadpacket).replace("aten.", ""), flops, float(moved)))
        return out


# metadata-only ops: no kernel runs
_FREE = {torch.ops.aten.detach, torch.ops.aten.lift_fresh, torch.ops.aten.empty, torch.ops.aten.empty_like,
         torch.ops.aten.empty_strided, torch.ops.aten.sym_size, torch.ops.aten.sym_stride,
         torch.ops.aten.sym_numel, torch.ops.aten.is_same_size, torch.ops.aten._unsafe_view}


def record_ops(model: torch.nn.Module, input_shape: tuple, dtype: torch.dtype = torch.float32) -> List[OpRecord]:
    """The ops of one eval forward of ``model`` (any device; it is copied to ``meta``) on an input of
    ``input_shape`` (batch included) in ``dtype``. A recurrent scan is one op (the fused kernel that
    runs on a GPU): its FLOPs are the mixer's registered scan cost (:mod:`archdsl.analysis.scan_macs`),
    its bytes six token tensors of the mixer's size (u, delta, z, y and the B/C projections)."""
    meta = _on_meta(model, dtype)
    x = torch.empty(input_shape, device="meta", dtype=dtype)
    rec = _Recorder()
    hooks = [m.register_forward_hook(_scan_hook(rec, fn)) for m in meta.modules() if (fn := scan_cost(m))]
    try:
        with torch.inference_mode(), rec:
            meta(x)
    finally:
        for h in hooks:
            h.remove()
    return rec.ops


def _scan_hook(rec: "_Recorder", cost: Any) -> Any:
    def hook(module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        x = inputs[0]                                   # tokens [B, N, C]
        macs = cost(module, x.shape[1]) * x.shape[0]
        if macs:
            rec.ops.append(OpRecord("selective_scan", 2.0 * macs, 6.0 * x.numel() * x.element_size()))
    return hook


def _on_meta(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    if all(p.device.type == "meta" for p in model.parameters()):
        m = model
    else:
        import copy

        m = copy.deepcopy(model).to("meta")
    return m.to(dtype=dtype).eval()


def predict(ops: List[OpRecord], profile: DeviceProfile, batch_size: int, dtype: str = "float32") -> Dict[str, Any]:
    """Roofline time of ``ops`` -> ``{images_per_s, seconds, ops, flops, bytes, compute_bound_s,
    memory_bound_s, launch_s}`` (the last three split the time by what bounds each op)."""
    peak, bw = profile.flops_for(dtype), float(profile.bandwidth)
    compute_s = memory_s = 0.0
    for op in ops:
        tc, tm = op.flops / peak, op.bytes / bw
        if tc >= tm:
            compute_s += tc
        else:
            memory_s += tm
    launch = profile.launch_s * len(ops)
    seconds = compute_s + memory_s + launch
    return {"images_per_s": batch_size / seconds if seconds > 0 else float("inf"), "seconds": seconds,
            "ops": len(ops), "flops": sum(o.flops for o in ops), "bytes": sum(o.bytes for o in ops),
            "compute_bound_s": compute_s, "memory_bound_s": memory_s, "launch_s": launch,
            "profile": profile.name, "dtype": dtype, "batch_size": batch_size}


def predict_model(model: torch.nn.Module, profile: DeviceProfile, *, batch_size: int, image_size: int | tuple,
                  in_chans: int = 3, dtype: str = "float32") -> Dict[str, Any]:
    """:func:`record_ops` + :func:`predict` for ``[batch_size, in_chans, H, W]`` images."""
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    torch_dtype = next(k for k, v in DTYPE_NAMES.items() if v == dtype)
    ops = record_ops(model, (batch_size, in_chans, *hw), torch_dtype)
    return predict(ops, profile, batch_size, dtype)
