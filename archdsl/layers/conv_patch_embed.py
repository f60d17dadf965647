"""``conv_patch_embed``: a convolutional patch embedding (Shunted Transformer's, PlainMamba's
``ConvPatchEmbed``): ``img [B, in_chans, H, W] -> ([B, H/p * W/p, dim], (H/p, W/p))``::

    conv1  Conv2d(in_chans, hidden, kernel, stride 2, padding ceil((kernel - 2) / 2), no bias) + BN + ReLU
    convs  num_convs x [Conv2d(hidden, hidden, 3, padding 1, no bias) + BN + ReLU]
    proj   Conv2d(hidden, dim, p / 2, stride p / 2, bias), the map zero-padded bottom/right to a
           multiple of p / 2 first (mmcv's "corner" adaptive padding)
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, pad_to_multiple, tokens_to_map
from archdsl.layers.conv_norm import ConvNormAct
from archdsl.registry import register


@register("stem", "conv_patch_embed")
class ConvPatchEmbed(nn.Module):
    """A stride-2 ``kernel`` x ``kernel`` conv + BN + ReLU (``hidden`` channels), ``num_convs`` 3x3
    conv + BN + ReLU, then non-overlapping ``patch_size / 2`` patches to ``dim`` (bias): total stride
    ``patch_size`` (PlainMamba: ``{hidden: 64, kernel: 7, num_convs: 1, patch_size: 16}``). Keys
    ``conv1.conv``, ``conv1.norm``, ``convs.{i}.conv``, ``convs.{i}.norm``, ``proj``."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 16, hidden: int = 64, kernel: int = 7,
                 num_convs: int = 1, bias: bool = True):
        super().__init__()
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 2 or patch_size % 2:
            raise ValueError(f"patch_size must be an even integer >= 2 (a stride-2 conv, then patches of "
                             f"patch_size / 2), got {patch_size!r}")
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f"num_convs must be an integer >= 0, got {num_convs!r}")
        self.reduction = patch_size
        self.conv1 = ConvNormAct(in_chans, hidden, kernel, stride=2, bias=False, norm="batchnorm", act="relu",
                                 what="conv_patch_embed")
        self.convs = nn.ModuleList(ConvNormAct(hidden, hidden, 3, bias=False, norm="batchnorm", act="relu")
                                   for _ in range(num_convs))
        self.proj = nn.Conv2d(hidden, dim, patch_size // 2, stride=patch_size // 2, bias=bias)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        x, hw = self.conv1(*map_to_tokens(img))
        for conv in self.convs:
            x, hw = conv(x, hw)
        return map_to_tokens(self.proj(pad_to_multiple(tokens_to_map(x, hw), self.reduction // 2)))
