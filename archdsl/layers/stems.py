"""Generic stems (kind ``"stem"``): ``cls(in_chans, dim, **options)``, ``forward(img[B,C,H,W]) ->
(x[B,N,dim], (H', W'))``. Each stem exposes ``reduction`` (its total stride) so the model can reject
images that are too small before running."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, pad_to_multiple
from archdsl.layers.primitives import Activation
from archdsl.registry import register


@register("stem", "patch_embed")
class PatchEmbed(nn.Module):
    """Non-overlapping patches (ViT/Swin): ``Conv2d(in_chans, dim, k=s=patch_size)`` then an optional
    LayerNorm (``norm: true`` as Swin's ``patch_norm``). Images whose size is not a multiple of the
    patch are zero-padded on the right/bottom (as Swin does)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4, norm: bool = False, bias: bool = True):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        self.patch_size = self.reduction = int(patch_size)
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, bias=bias)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        img = pad_to_multiple(img, self.patch_size).contiguous(memory_format=torch.channels_last)
        x, hw = map_to_tokens(self.proj(img))  # [B, H/p * W/p, dim]
        if self.norm is not None:
            x = self.norm(x)
        return x, hw


class ConvBN(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> activation`` (activation optional)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: str | None = "relu"):
        layers = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
                  nn.BatchNorm2d(cout)]
        if act:
            layers.append(Activation(act))
        super().__init__(*layers)


@register("stem", "conv_stem")
class ConvStem(nn.Module):
    """Two 3x3 stride-2 convs (patch 4): ``conv(in -> hidden) + BN + act``, ``conv(hidden -> dim) + BN``;
    the image is zero-padded bottom/right to a multiple of 4 first.
    ``hidden`` defaults to ``dim // 2``."""

    reduction = 4

    def __init__(self, in_chans: int, dim: int, hidden: int | None = None, act: str = "relu"):
        super().__init__()
        hidden = hidden or max(dim // 2, 1)
        self.conv1 = ConvBN(in_chans, hidden, 3, 2, act=act)
        self.conv2 = ConvBN(hidden, dim, 3, 2, act=None)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        img = pad_to_multiple(img, 4).contiguous(memory_format=torch.channels_last)
        return map_to_tokens(self.conv2(self.conv1(img)))
