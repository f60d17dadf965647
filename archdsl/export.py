"""Export a compiled model: ``torch.export`` programs (``.pt2``) and ONNX (the dynamo exporter).

    program = export_program(model, example, dynamic_batch=True, dynamic_hw=False)  # ExportedProgram
    onnx_program = export_onnx(model, example, dynamic_batch=True)                   # torch.onnx.ONNXProgram
    save_program(program, "model.pt2"); save_onnx(onnx_program, "model.onnx")       # atomic writes

``example``: an image batch ``[B, C, H, W]`` (B >= 2, so the batch is not specialised to 1).
A dynamic batch works for every shipped spec. A dynamic height / width is asked for in steps of
``model.reduction`` (the total stride), at least two steps, and needs ops that follow the real grid
symbolically (RoPE, APE, LePE / CPE convolutions, global attention, patch embedding / merging, the
MLLA stem / merge, ConvNeXt / MambaOut blocks). A module whose ``fixed_size_reason()`` says why it
cannot (Swin windows, causal scans: ``archdsl.layers.base.TokenModule``) is refused before tracing,
naming the module; and a traced program whose shape guards still pin a size (Python control flow
on the concrete size that no module declared) is refused after tracing, quoting the guard, instead
of returning a program that fails at other sizes (docs/export.md).

Tracing never reads or fills archdsl's eager caches (RoPE / window / scan tables:
``archdsl.ops.tracing``), so eager calls after an export return real tensors, and RoPE is traced
in its real (cos, sin) form (ONNX has no complex type).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from archdsl.files import write_atomic

__all__ = ["ExportError", "dynamic_shapes", "export_program", "export_onnx", "save_program", "save_onnx",
           "example_input", "output_names", "fixed_size_modules"]


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
    stride (``model.reduction``, 1 when unknown) from two strides up to 8192 (a trace specialises a
    grid of one step: the last stage would be 1 x n)."""
    dims: Dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if dynamic_hw:
        r = int(getattr(model, "reduction", None) or 1)
        dims[2] = r * torch.export.Dim("h_steps", min=2, max=8192 // r)
        dims[3] = r * torch.export.Dim("w_steps", min=2, max=8192 // r)
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
    if dynamic_hw:
        _refuse_fixed_size_modules(model)


def fixed_size_modules(model: nn.Module) -> List[Tuple[str, str]]:
    """``(module name, reason)`` for every submodule whose ``fixed_size_reason()`` is not None: the
    modules that keep a traced program from taking another height / width."""
    found = []
    for name, module in model.named_modules():
        reason = getattr(module, "fixed_size_reason", None)
        reason = reason() if callable(reason) else None
        if reason:
            found.append((name, f"{type(module).__name__}: {reason}"))
    return found


def _refuse_fixed_size_modules(model: nn.Module) -> None:
    found = fixed_size_modules(model)
    if found:
        name, reason = found[0]
        more = f" (and {len(found) - 1} more module(s))" if len(found) > 1 else ""
        raise ExportError(f"a dynamic height / width is not possible for this model: {name} ({reason}){more}; "
                          f"export at a fixed size (--image-size), one file per size")


def _probe_sizes(example: torch.Tensor, model: nn.Module, r: int) -> Iterable[Tuple[int, int]]:
    """Heights / widths a dynamic-H/W program must take: 2..9, 16 and 33 strides each way, the example,
    and the model's default input size (rounded up to the stride)."""
    steps = (2, 3, 4, 5, 6, 7, 8, 9, 16, 33)
    sizes = [(r * a, r * b) for a in steps for b in steps]
    _, h, w = getattr(model, "default_input_size", (3, 2 * r, 2 * r))
    return [tuple(example.shape[2:]), (-(-h // r) * r, -(-w // r) * r), *sizes]


def _refuse_pinned_sizes(program: "torch.export.ExportedProgram", model: nn.Module, example: torch.Tensor) -> None:
    """Run the program's input guards (``ExportedProgram.module()._guards_fn``: shapes only, no
    compute) at :func:`_probe_sizes`; the first size refused is an ExportError quoting the guard."""
    guards = getattr(program.module(), "_guards_fn", None)
    if guards is None:  # a torch without input guards in the module: nothing to check here
        return
    r = int(getattr(model, "reduction", None) or 1)
    b, c = example.shape[:2]
    for h, w in _probe_sizes(example, model, r):
        try:
            guards(example[:, :, :1, :1].expand(b, c, h, w))  # a stride-0 view: the sizes, no memory
        except AssertionError as e:
            raise ExportError(f"torch.export kept the height / width dynamic but the program does not take "
                              f"{h}x{w} ({_first_line(e)}): an op decides on the concrete size in Python; "
                              f"export at a fixed size (--image-size)") from e


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
    program = _traced(lambda: torch.export.export(model, (example,), dynamic_shapes=shapes),
                      "torch.export", dynamic_hw)
    if dynamic_hw:
        _refuse_pinned_sizes(program, model, example)
    return program


def export_onnx(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = True,
                dynamic_hw: bool = False, opset_version: Optional[int] = None) -> Any:
    """``torch.onnx.export(..., dynamo=True)`` of ``model`` (eval mode); input ``img``, outputs
    :func:`output_names` (dynamic axes as asked). Returns the ``ONNXProgram`` (``.save(path)``, ``.model_proto``)."""
    _check_example(model, example, dynamic_batch, dynamic_hw)
    model.eval()
    shapes = dynamic_shapes(model, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw)
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    onnx_program = _traced(lambda: torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=shapes,
                                                     input_names=["img"], output_names=output_names(model),
                                                     verbose=False, **kwargs),
                           "torch.onnx.export (dynamo)", dynamic_hw)
    if dynamic_hw and getattr(onnx_program, "exported_program", None) is not None:
        _refuse_pinned_sizes(onnx_program.exported_program, model, example)
    return onnx_program


def save_program(program: "torch.export.ExportedProgram", path: str) -> None:
    """``torch.export.save`` atomically (load with ``torch.export.load(path).module()``)."""
    write_atomic(path, lambda tmp: torch.export.save(program, tmp), suffix=".pt2")


def save_onnx(onnx_program: Any, path: str) -> None:
    """Write an ``ONNXProgram`` atomically as one self-contained ``.onnx`` file."""
    write_atomic(path, lambda tmp: onnx_program.save(tmp, external_data=False), suffix=".onnx")
