"""MLLA-specific stem and downsampler (docs/paper.md §4), with the official submodule names.

``mlla_stem`` (patch size 4): ``img [B, 3, H, W] -> (tokens [B, H/4 * W/4, C], (H/4, W/4))``; an image
whose sides are not multiples of 4 is zero-padded bottom/right first (official detection backbone)::

    conv1 = conv3x3 s2 (in -> C/2, no bias) + BN + ReLU
    x = conv2(x) + x,  conv2 = [conv3x3 (C/2 -> C/2) + BN + ReLU, conv3x3 (C/2 -> C/2) + BN]
    conv3 = [conv3x3 s2 (C/2 -> 4C) + BN + ReLU, conv1x1 (4C -> C) + BN]

``mlla_merge`` (MBConv-like, stride 2): ``(x [B, H*W, C], (H, W)) -> ([B, ceil(H/2)*ceil(W/2), C'], hw')``;
an odd grid is zero-padded to even first (official detection backbone)::

    conv.0 = conv1x1 (C -> r C', bias) + ReLU
    conv.1 = dwconv3x3 s2 (r C', bias) + ReLU
    conv.2 = conv1x1 (r C' -> C', bias) + BN          (r = ratio = 4; C' = 2C in MLLA)

State-dict keys equal the official ones (``conv1.conv.weight``, ``conv2.0.norm.running_mean``,
``conv.2.conv.bias``...), so released checkpoints map one to one.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, pad_to_multiple, tokens_to_map
from archdsl.registry import register

__all__ = ["ConvNormAct", "MLLAStem", "MLLAMerge"]


class ConvNormAct(nn.Module):
    """``conv -> (BatchNorm2d) -> (ReLU)`` on maps ``[B, C_in, H, W] -> [B, C_out, H', W']``.

    Attribute names ``conv`` / ``norm`` / ``act`` as the official ``ConvLayer``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
                 bias: bool = True, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
        self.norm: Optional[nn.Module] = nn.BatchNorm2d(c_out) if norm else None
        self.act: Optional[nn.Module] = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


def _positive(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


@register("stem", "mlla_stem")
class MLLAStem(nn.Module):
    """MLLA convolutional stem, patch size 4: ``img [B, in_chans, H, W] -> ([B, N, dim], (H/4, W/4))``.

    ``dim`` must be even (the first two stages run at ``dim / 2`` channels)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4):
        super().__init__()
        _positive("in_chans", in_chans)
        _positive("dim", dim)
        if patch_size != 4:
            raise ValueError(f"mlla_stem has a fixed patch size of 4 (two stride-2 convs), got patch_size={patch_size}")
        if dim % 2:
            raise ValueError(f"mlla_stem needs an even dim (it runs at dim/2 channels first), got {dim}")
        half = dim // 2
        self.conv1 = ConvNormAct(in_chans, half, 3, 2, bias=False)
        self.conv2 = nn.Sequential(ConvNormAct(half, half, 3, 1, bias=False),
                                   ConvNormAct(half, half, 3, 1, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvNormAct(half, 4 * dim, 3, 2, bias=False),
                                   ConvNormAct(4 * dim, dim, 1, 1, bias=False, act=False))
        self.dim = dim

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        if img.dim() != 4:
            raise ValueError(f"mlla_stem expects images [B, C, H, W], got shape {tuple(img.shape)}")
        img = pad_to_multiple(img, 4)  # official detection backbone: pad to the patch size
        x = self.conv1(img.contiguous(memory_format=torch.channels_last))  # oneDNN's fast layout
        x = self.conv2(x) + x
        x = self.conv3(x)
        return map_to_tokens(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, patch_size=4"


@register("downsample", "mlla_merge")
class MLLAMerge(nn.Module):
    """MLLA's MBConv-like patch merging, stride 2: ``(x [B, H*W, dim_in], (H, W)) ->
    ([B, H'*W', dim_out], (H', W'))`` with ``H' = ceil(H/2)``; hidden width ``int(ratio * dim_out)``."""

    def __init__(self, dim_in: int, dim_out: int, ratio: float = 4.0):
        super().__init__()
        _positive("dim_in", dim_in)
        _positive("dim_out", dim_out)
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0):
            raise ValueError(f"ratio must be a positive number, got {ratio!r}")
        hidden = int(dim_out * ratio)
        self.conv = nn.Sequential(
            ConvNormAct(dim_in, hidden, 1, 1, norm=False),
            ConvNormAct(hidden, hidden, 3, 2, groups=hidden, norm=False),
            ConvNormAct(hidden, dim_out, 1, 1, act=False),
        )
        self.dim_in, self.dim_out, self.hidden = dim_in, dim_out, hidden

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        m = tokens_to_map(x, hw)
        if hw[0] % 2 or hw[1] % 2:  # as the official detection backbone: zero-pad an odd grid to even
            m = F.pad(m, (0, hw[1] % 2, 0, hw[0] % 2))
        return map_to_tokens(self.conv(m))

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, dim_out={self.dim_out}, hidden={self.hidden}"
