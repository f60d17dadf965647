"""Dense-prediction decoders (registry kind ``"decoder"``): ``cls(in_channels: list, num_classes,
**options)``, ``forward(features: list of [B, C_i, H_i, W_i]) -> logits [B, K, H_0, W_0]`` at the
resolution of the first (finest) feature map.

``upernet``: UperNet (Xiao et al. 2018), the decoder MLLA / Swin report ADE20K with (mmseg's
``UPerHead``): a pyramid-pooling module on the coarsest map, an FPN top-down path with 1x1 lateral
and 3x3 output convs, all levels upsampled to the finest and fused by a 3x3 conv, then dropout and a
1x1 classifier. Every conv is ``Conv(bias=False) -> BatchNorm -> ReLU`` (ConvModule).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.registry import register

__all__ = ["UperNetDecoder", "conv_bn_relu"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    """``Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False) -> BatchNorm2d -> ReLU``."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@register("decoder", "upernet")
class UperNetDecoder(nn.Module):
    """UperNet head: features ``[B, C_i, H_i, W_i]`` (finest first) -> logits ``[B, K, H_0, W_0]``.

    ``channels``: the decoder width (mmseg: 512); ``pool_scales``: the pyramid-pooling bins;
    ``dropout``: Dropout2d before the classifier (mmseg: 0.1)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not in_channels or any(c < 1 for c in in_channels):
            raise ValueError(f"in_channels must be a non-empty list of positive ints, got {in_channels!r}")
        if num_classes < 1 or channels < 1:
            raise ValueError(f"num_classes and channels must be >= 1, got {num_classes}, {channels}")
        self.in_channels, self.num_classes = in_channels, int(num_classes)
        self.psp = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels[-1], channels))
                                 for s in pool_scales)
        self.bottleneck = conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def _pyramid_pooling(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x] + [_resize(p(x), x) for p in self.psp], dim=1))

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(features)}")
        levels = [lat(f) for lat, f in zip(self.lateral, features)] + [self._pyramid_pooling(features[-1])]
        for i in range(len(levels) - 1, 0, -1):  # top-down
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1])
        outs = [conv(t) for conv, t in zip(self.fpn, levels[:-1])] + [levels[-1]]
        fused = self.fuse(torch.cat([outs[0]] + [_resize(t, outs[0]) for t in outs[1:]], dim=1))
        return self.classifier(self.dropout(fused))
