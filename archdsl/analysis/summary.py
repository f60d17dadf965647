"""Parameters, multiply-accumulates (MACs) and a per-stage summary of a compiled model.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 and reported as
``total FLOPs / 2`` (the fvcore / Swin / MLLA papers' "FLOPs" are MACs). What torch counts: matrix
products (``mm``, ``addmm``, ``bmm``, ``baddbmm`` -- so ``nn.Linear``, ``einsum`` and ``@`` count),
convolutions (incl. depthwise) and scaled-dot-product attention kernels. Elementwise work (norms,
activations, softmax, additions, RoPE rotations), pooling and interpolation are *not* counted, the
same convention as the official MLLA numbers (docs/paper.md §3).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Dict, Iterator, List, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

SizeT = Union[int, Sequence[int]]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (``sum(p.numel())``; buffers such as BN statistics not included)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def _input_shape(model: nn.Module, input_size: SizeT | None) -> Tuple[int, int, int, int]:
    """-> ``(1, C, H, W)`` from an int (square), ``(H, W)`` or ``(C, H, W)``."""
    c = int(getattr(model, "in_chans", 3))
    if input_size is None:
        size = getattr(model, "default_input_size", (c, 224, 224))
        return (1, *map(int, size))  # type: ignore[return-value]
    if isinstance(input_size, int):
        return (1, c, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (1, c, *size)  # type: ignore[return-value]
    if len(size) == 3:
        return (1, *size)  # type: ignore[return-value]
    raise ValueError(f"input_size must be an int, (H, W) or (C, H, W), got {input_size!r}")


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of the CPU SDPA kernel, which FlopCounterMode has no formula for (it would count 0 and
    the CPU figure would differ from the meta-device one): the two matmuls, as for the CUDA kernels.
    FlopCounterMode passes tensor shapes to ``custom_mapping`` entries."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def _flops(fn: Any, *args: Any) -> Tuple[Any, int]:
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as fc:
        out = fn(*args)
    return out, int(fc.get_total_flops())


def call_macs(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Multiply-accumulates of one call ``fn(*args, **kwargs)`` (``FlopCounterMode`` FLOPs // 2, no grad)."""
    with torch.no_grad():
        _, flops = _flops(partial(fn, *args, **kwargs))
    return flops // 2


def count_macs(model: nn.Module, input_size: SizeT | None = None) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (eval mode, no grad):
    ``FlopCounterMode`` total FLOPs // 2. ``input_size``: int, ``(H, W)`` or ``(C, H, W)``;
    default ``model.default_input_size``."""
    shape = _input_shape(model, input_size)
    x = torch.zeros(shape, device=_device(model))
    with _eval(model):
        _, flops = _flops(model, x)
    return flops // 2


def summarize(model: nn.Module, image_size: SizeT | None = None) -> Dict[str, Any]:
    """Per-part table of an ``ArchModel`` at batch 1: rows ``stem``, ``pos_embed`` (if any),
    ``stage{i}`` (its blocks), ``downsample{i}``, ``head``, each ``{name, output_shape, params,
    macs}``; plus ``params``, ``macs`` (totals, equal to :func:`count_params` / :func:`count_macs`),
    ``input_shape`` and ``output_shape`` (a list of shapes for a ``features_only`` backbone, whose
    ``norms`` row replaces ``head``)."""
    shape = _input_shape(model, image_size)
    x = torch.zeros(shape, device=_device(model))
    rows: List[Dict[str, Any]] = []

    def row(name: str, module: nn.Module | Sequence[nn.Module], out_shape: Sequence[int], flops: int) -> None:
        mods = [module] if isinstance(module, nn.Module) else list(module)
        rows.append({"name": name, "output_shape": list(out_shape),
                     "params": sum(count_params(m) for m in mods), "macs": flops // 2})

    with _eval(model):
        if hasattr(model, "check_input"):
            model.check_input(x)
        (t, hw), f = _flops(model.stem, x)
        row("stem", model.stem, t.shape, f)
        cls_token = getattr(model, "cls_token", None)
        if len(getattr(model, "pos_embed", ())) or cls_token is not None:
            def _pe(t, hw):
                t = model.add_class_token(t)
                for pe in model.pos_embed:
                    t = pe(t, hw)
                return t
            t, f = _flops(_pe, t, hw)
            row("pos_embed", [model.pos_embed] + ([cls_token] if cls_token is not None else []), t.shape, f)
        for i, stage in enumerate(model.stages):
            def _blocks(t, hw, stage=stage):
                for blk in stage.blocks:
                    t = blk(t, hw)
                return t
            t, f = _flops(_blocks, t, hw)
            row(f"stage{i}", stage.blocks, t.shape, f)
            if stage.downsample is not None:
                (t, hw), f = _flops(stage.downsample, t, hw)
                row(f"downsample{i}", stage.downsample, t.shape, f)
        if getattr(model, "head", None) is not None:
            if cls_token is not None:
                t = model.class_token_first(t)
            y, f = _flops(model.head, t, hw)
            row("head", model.head, y.shape, f)
            out_shape: list = list(y.shape)
        else:  # a backbone: per-output norms (elementwise: no MACs), a list of feature maps
            norms = [m for k, m in model.named_children() if k.startswith("norm") and k[4:].isdigit()]
            if norms:
                row("norms", norms, t.shape, 0)
            out_shape = [list(f.shape) for f in model(x)]
    return {"rows": rows, "params": count_params(model), "macs": sum(r["macs"] for r in rows),
            "input_shape": list(shape), "output_shape": out_shape}
