"""Generic stems (kind ``"stem"``): ``cls(in_chans, dim, **options)``, ``forward(img[B,C,H,W]) ->
(x[B,N,dim], (H', W'))``. Each stem exposes ``reduction`` (its total stride) so the model can reject
images that are too small before running."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, pad_to_multiple
from archdsl.layers.conv_norm import ConvNormAct
from archdsl.registry import register


@register("stem", "patch_embed")
class PatchEmbed(nn.Module):
    """Non-overlapping patches (ViT/Swin): ``Conv2d(in_chans, dim, k=s=patch_size)`` then an optional
    LayerNorm (``norm: true`` as Swin's ``patch_norm``; ConvNeXt's stem with ``norm_eps: 1e-6``). Images whose size is not a multiple of the
    patch are zero-padded on the right/bottom (as Swin does)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4, norm: bool = False, bias: bool = True,
                 norm_eps: float = 1e-5):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        self.patch_size = self.reduction = int(patch_size)
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, bias=bias)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else None

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        img = pad_to_multiple(img, self.patch_size).contiguous(memory_format=torch.channels_last)
        x, hw = map_to_tokens(self.proj(img))  # [B, H/p * W/p, dim]
        if self.norm is not None:
            x = self.norm(x)
        return x, hw


@register("stem", "conv_stem")
class ConvStem(nn.Module):
    """Two ``kernel`` x ``kernel`` stride-2 convs (patch 4): ``conv(in -> hidden) + norm + act``,
    ``conv(hidden -> dim) + norm``; the image is zero-padded bottom/right to a multiple of 4 first.
    ``hidden`` defaults to ``dim // 2``; ``norm``: batchnorm
    (default, convs without bias) | layernorm (MambaOut: ``norm: layernorm, act: gelu, bias: true,
    norm_eps: 1e-6``) | groupnorm | none; ``padding`` as :func:`archdsl.layers.padding.conv_padding`.
    Keys ``conv1.conv``, ``conv1.norm``, ``conv2.conv``, ``conv2.norm``."""

    reduction = 4

    def __init__(self, in_chans: int, dim: int, hidden: int | None = None, act: str = "relu",
                 norm: str | None = "batchnorm", norm_eps: float | None = None, bias: bool = False,
                 kernel: int = 3, padding: int | None = None):
        super().__init__()
        hidden = hidden or max(dim // 2, 1)
        conv = dict(kernel=kernel, stride=2, padding=padding, bias=bias, norm=norm, norm_eps=norm_eps,
                    what="conv_stem")
        self.conv1 = ConvNormAct(in_chans, hidden, act=act, **conv)
        self.conv2 = ConvNormAct(hidden, dim, act=None, **conv)

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        x, hw = map_to_tokens(pad_to_multiple(img, 4))
        return self.conv2(*self.conv1(x, hw))
