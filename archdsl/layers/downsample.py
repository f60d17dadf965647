"""Generic downsamplers between stages (kind ``"downsample"``): ``cls(dim_in, dim_out, **options)``,
``forward(x[B, H*W, C], (H, W)) -> (x'[B, H'*W', dim_out], (H', W'))`` with H' = ceil(H / 2)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW
from archdsl.layers.conv_norm import ConvNormAct
from archdsl.registry import register


@register("downsample", "patch_merging")
class PatchMerging(nn.Module):
    """Swin patch merging: concat each 2x2 neighbourhood (4C) -> LayerNorm(4C) -> Linear(4C, dim_out,
    bias=False). Odd grids are zero-padded to even first. Keys: ``norm``, ``reduction`` (as Swin)."""

    reduction_factor = 2

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim_in)
        self.reduction = nn.Linear(4 * dim_in, dim_out, bias=False)

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        B, N, C = x.shape
        H, W = hw
        x = x.view(B, H, W, C)
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # Swin's order: (0,0), (1,0), (0,1), (1,1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        H2, W2 = x.shape[1], x.shape[2]
        x = x.reshape(B, H2 * W2, 4 * C)  # [B, N/4, 4C]
        return self.reduction(self.norm(x)), (H2, W2)


@register("downsample", "conv_downsample")
class ConvDownsample(ConvNormAct):
    """``Conv2d(dim_in, dim_out, kernel 3, stride 2, padding 1)`` with a norm on tokens (layernorm |
    batchnorm | rmsnorm | groupnorm | none) after it, or before it with ``norm_position: before``
    (ConvNeXt: ``{kernel: 2, norm_position: before, norm_eps: 1e-6}``). The padding defaults to the
    one that halves the grid reading every pixel (:func:`archdsl.layers.padding.conv_padding`);
    a kernel that cannot (e.g. 1) needs an explicit ``padding``. Keys ``conv``, ``norm``."""

    def __init__(self, dim_in: int, dim_out: int, norm: str | None = "layernorm", kernel: int = 3,
                 stride: int = 2, padding: int | None = None, norm_position: str = "after",
                 norm_eps: float | None = None, bias: bool = True):
        super().__init__(dim_in, dim_out, kernel, stride, padding, bias=bias, norm=norm, norm_eps=norm_eps,
                         norm_position=norm_position, what="conv_downsample")
        self.reduction_factor = stride
