"""``optimize(model, for_inference=True)``: rewrite a compiled model for deployment.

Returns a new module (the input is left as it is) computing the same function in eval mode:

* every ``Conv2d -> BatchNorm2d`` pair (the MLLA stem and merges, the conv stem) is folded into one
  convolution with the BN's eval statistics (``torch.nn.utils.fusion.fuse_conv_bn_eval``);
* a ``branch`` whose paths all start with a linear layer reading the branch input (MLLA's
  ``in_proj`` / ``act_proj``) runs those layers as one GEMM with the weights concatenated;
* with ``dtype=torch.bfloat16`` the weights are cast and the input is cast on entry (logits float32)
  -- worth it only on a CPU with bf16 matmul units (avx512_bf16 / amx_bf16) or a GPU.

Everything is frozen (``requires_grad=False``); the optimised model is for inference only. The tokens
already run in one layout (channels-last maps are views of ``[B, N, C]``; see ``layers/base.py``).
"""
from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from archdsl.compiler.graph import Scope, _Branch, _Leaf, _Node, _Residual, _Seq

__all__ = ["optimize"]


class FusedLinear(nn.Module):
    """Linears reading the same input as one GEMM: ``x [..., C] -> ([..., C_1], [..., C_2], ...)``.
    The concatenated weights are non-persistent buffers (the state dict keeps the original layers)."""

    def __init__(self, linears: List[nn.Linear]):
        super().__init__()
        self.sizes = [lin.out_features for lin in linears]
        biases = [lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features) for lin in linears]
        self.register_buffer("weight", torch.cat([lin.weight.detach() for lin in linears]), persistent=False)
        self.register_buffer("bias", torch.cat([b.detach() for b in biases]), persistent=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.sizes}"


class _SharedLinearBranch(_Node):
    """A ``branch`` whose paths start with linears on the same input: those run as one
    :class:`FusedLinear`, then the rest of each path, merged like the original branch."""

    def __init__(self, branch: _Branch, fused: FusedLinear, rests: List[_Node]):
        self.branch, self.fused, self.rests = branch, fused, rests

    def run(self, x, hw):
        outs = [rest.run(p, hw)[0] for rest, p in zip(self.rests, self.fused(x))]
        return self.branch.merge_outputs(outs), hw

    def describe(self) -> str:
        return f"fused-linear {self.branch.describe()}"


def _leading_linear(path: _Node) -> Optional[Tuple[nn.Linear, _Node]]:
    """(the first leaf's Linear, the rest of the path) when the path starts with a plain linear."""
    items = path.items if isinstance(path, _Seq) else [path]
    if not items or not isinstance(items[0], _Leaf) or not isinstance(items[0].module, nn.Linear):
        return None
    return items[0].module, _Seq(items[1:])


def _fuse_branches(node: _Node, scope: Scope) -> _Node:
    """The program with every eligible branch replaced by a :class:`_SharedLinearBranch` (its
    :class:`FusedLinear` registered on ``scope`` as ``fused<i>``)."""
    if isinstance(node, _Seq):
        return _Seq([_fuse_branches(i, scope) for i in node.items])
    if isinstance(node, _Residual):
        return _Residual(_fuse_branches(node.body, scope))
    if isinstance(node, _Branch):
        node = _Branch({k: _fuse_branches(p, scope) for k, p in node.paths.items()}, node.merge)
        leads = [_leading_linear(p) for p in node.paths.values()]
        if len(leads) > 1 and all(lead is not None for lead in leads):
            fused = FusedLinear([lead[0] for lead in leads])
            scope.add_module(f"fused{sum(isinstance(m, FusedLinear) for m in scope.children())}", fused)
            return _SharedLinearBranch(node, fused, [lead[1] for lead in leads])
    return node


def _fold_conv_bn(module: nn.Module) -> None:
    """Fold each ``conv`` + ``norm`` attribute pair and each (Conv2d, BatchNorm2d) pair in a
    Sequential into the convolution (the BN becomes Identity; eval statistics)."""
    for child in module.modules():
        conv, bn = getattr(child, "conv", None), getattr(child, "norm", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            child.conv, child.norm = fuse_conv_bn_eval(conv, bn), nn.Identity()
        if isinstance(child, nn.Sequential):
            for i in range(len(child) - 1):
                if isinstance(child[i], nn.Conv2d) and isinstance(child[i + 1], nn.BatchNorm2d):
                    child[i], child[i + 1] = fuse_conv_bn_eval(child[i], child[i + 1]), nn.Identity()


class _CastInput(nn.Module):
    """Run ``model`` in ``dtype``: inputs cast on entry, float32 outputs."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def optimize(model: nn.Module, for_inference: bool = True, dtype: Optional[torch.dtype] = None) -> nn.Module:
    """A copy of a compiled ``model`` rewritten for inference (see the module docstring).
    ``img [B, 3, H, W] -> logits`` as the original in eval mode (equal up to float rounding)."""
    if not for_inference:
        raise ValueError("optimize() rewrites for inference only (BN folding needs eval statistics); "
                         "pass for_inference=True")
    out = copy.deepcopy(model).eval()
    out.requires_grad_(False)
    _fold_conv_bn(out)
    for scope in [m for m in out.modules() if isinstance(m, Scope)]:
        scope.program = _fuse_branches(scope.program, scope)
    if dtype is not None and dtype != torch.float32:
        return _CastInput(out.to(dtype), dtype).eval()
    return out
