"""Export a compiled model: ``torch.export`` programs (``.pt2``) and ONNX (the dynamo exporter).

    program = export_program(model, example, dynamic_batch=True, dynamic_hw=False)  # ExportedProgram
    onnx_program = export_onnx(model, example, dynamic_batch=True)                   # torch.onnx.ONNXProgram
    save_program(program, "model.pt2"); save_onnx(onnx_program, "model.onnx")       # atomic writes

``example``: an image batch ``[B, C, H, W]`` (B >= 2, so the batch is not specialised to 1).
A dynamic batch works for every shipped spec. A dynamic height / width is asked for in steps of
``model.reduction`` (the total stride) and needs ops that follow the real grid symbolically (RoPE,
LePE / CPE convolutions, global attention, patch embedding / merging, MLLA stem / merge: MLLA-T is
tested); Swin windows, APE and causal scans decide on the concrete size in Python (docs/export.md),
and :func:`export_program` raises :class:`ExportError` with torch's first line of reason then.

Tracing never reads or fills archdsl's eager caches (RoPE / window / scan tables:
``archdsl.ops.tracing``), so eager calls after an export return real tensors, and RoPE is traced
in its real (cos, sin) form (ONNX has no complex type).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from archdsl.files import write_atomic

__all__ = ["ExportError", "dynamic_shapes", "export_program", "export_onnx", "save_program", "save_onnx",
           "example_input", "output_names"]


class ExportError(ValueError):
    """The model cannot be exported as asked (e.g. a dynamic height / width its ops do not allow)."""


def example_input(model: nn.Module, batch: int = 2, image_size: Optional[int] = None) -> torch.Tensor:
    """A random image batch ``[batch, in_chans, S, S]`` at ``image_size`` or the model's default size."""
    c, h, w = getattr(model, "default_input_size", (3, 224, 224))
    if image_size is not None:
        h = w = int(image_size)
    return torch.randn(batch, c, h, w)


def dynamic_shapes(model: nn.Module, *, dynamic_batch: bool = True, dynamic_hw: bool = False) -> Dict[str, Any]:
    """``dynamic_shapes`` for ``model(img)``: batch 1..4096; H and W any multiple of the model's total
    stride (``model.reduction``, 1 when unknown) up to 8192."""
    dims: Dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if dynamic_hw:
        r = int(getattr(model, "reduction", None) or 1)
        dims[2] = r * torch.export.Dim("h_steps", min=1, max=8192 // r)
        dims[3] = r * torch.export.Dim("w_steps", min=1, max=8192 // r)
    return {"img": dims or None}


def _check_example(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, dynamic_hw: bool) -> None:
    if dynamic_batch and example.shape[0] < 2:
        raise ExportError(f"a dynamic batch needs an example batch of at least 2 (torch specialises a "
                          f"size of 1); got {list(example.shape)}")
    r = int(getattr(model, "reduction", None) or 1)
    h, w = example.shape[2], example.shape[3]
    if dynamic_hw and (h % r or w % r or h < 2 * r or w < 2 * r):
        raise ExportError(f"a dynamic height / width is exported in steps of the total stride {r}: the example "
                          f"size {h}x{w} must be a multiple of it and at least {2 * r} (one step is specialised)")


def output_names(model: nn.Module) -> List[str]:
    """``["logits"]`` for a classifier; ``["feature_<i>", ...]`` (one per output stage / block) for a
    ``features_only`` backbone."""
    if getattr(model, "features_only", False):
        return [f"feature_{i}" for i in model.feature_info.out_indices]
    return ["logits"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _traced(fn: Callable[[], Any], what: str, dynamic_hw: bool) -> Any:
    """Run an exporter; a failure becomes one ExportError line (what was asked, torch's reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except ExportError:
        raise
    except Exception as e:  # torch raises many types (UserError, Unsupported, GuardOnDataDependent...)
        hint = " (the spec's ops do not allow a dynamic height / width: export without it)" if dynamic_hw else ""
        raise ExportError(f"{what} failed{hint}: {_first_line(e)}") from e


def export_program(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = True,
                   dynamic_hw: bool = False) -> "torch.export.ExportedProgram":
    """``torch.export.export`` of ``model`` (put in eval mode) on ``example`` ``[B, C, H, W]``."""
    _check_example(model, example, dynamic_batch, dynamic_hw)
    model.eval()
    shapes = dynamic_shapes(model, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw)
    return _traced(lambda: torch.export.export(model, (example,), dynamic_shapes=shapes),
                   "torch.export", dynamic_hw)


def export_onnx(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = True,
                dynamic_hw: bool = False, opset_version: Optional[int] = None) -> Any:
    """``torch.onnx.export(..., dynamo=True)`` of ``model`` (eval mode); input ``img``, outputs
    :func:`output_names` (dynamic axes as asked). Returns the ``ONNXProgram`` (``.save(path)``, ``.model_proto``)."""
    _check_example(model, example, dynamic_batch, dynamic_hw)
    model.eval()
    shapes = dynamic_shapes(model, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw)
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    return _traced(lambda: torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=shapes,
                                             input_names=["img"], output_names=output_names(model),
                                             verbose=False, **kwargs),
                   "torch.onnx.export (dynamo)", dynamic_hw)


def save_program(program: "torch.export.ExportedProgram", path: str) -> None:
    """``torch.export.save`` atomically (load with ``torch.export.load(path).module()``)."""
    write_atomic(path, lambda tmp: torch.export.save(program, tmp), suffix=".pt2")


def save_onnx(onnx_program: Any, path: str) -> None:
    """Write an ``ONNXProgram`` atomically as one self-contained ``.onnx`` file."""
    write_atomic(path, lambda tmp: onnx_program.save(tmp, external_data=False), suffix=".onnx")
