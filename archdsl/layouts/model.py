"""The model class every layout returns: stem -> (positional encodings) -> stages -> head."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

HW = Tuple[int, int]


class Stage(nn.Module):
    """``blocks`` (each ``(x, hw) -> x``) then an optional ``downsample`` (``(x, hw) -> (x', hw')``).

    ``forward(x[B, H*W, C], hw) -> (x'[B, H'*W', C'], hw')``.
    """

    def __init__(self, blocks: Sequence[nn.Module], downsample: Optional[nn.Module] = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        for blk in self.blocks:
            x = blk(x, hw)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return x, tuple(hw)


class ArchModel(nn.Module):
    """A compiled model. ``forward(img[B, C, H, W]) -> logits[B, num_classes]``;
    ``forward_features(img) -> (tokens[B, N, C_last], (H', W'))`` (before the head).

    Attributes: ``stem``, ``pos_embed`` (ModuleList, may be empty), ``stages[i].blocks[j]``,
    ``stages[i].downsample`` (None in the last stage), ``head``; ``spec`` (the ModelSpec it was
    built from), ``layout``, ``dims`` (width per stage), ``reduction`` (total stride, when known),
    ``default_input_size`` ``(in_chans, image_size, image_size)``. Any input size the strides
    allow works (RoPE / APE / windows adapt); smaller than the total stride is rejected.
    """

    def __init__(self, *, stem: nn.Module, stages: List[Stage], head: nn.Module, pos_embed: Sequence[nn.Module] = (),
                 spec: Any = None, layout: str = "hierarchical", dims: Sequence[int] = (), in_chans: int = 3,
                 image_size: int = 224, reduction: Optional[int] = None):
        super().__init__()
        self.stem = stem
        self.pos_embed = nn.ModuleList(pos_embed)
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.spec = spec
        self.layout = layout
        self.dims = list(dims)
        self.in_chans = in_chans
        self.reduction = reduction
        self.default_input_size = (in_chans, image_size, image_size)
        self.num_features = self.dims[-1] if self.dims else None

    @property
    def name(self) -> str:
        return str(getattr(self.spec, "name", None) or "model")

    def check_input(self, img: torch.Tensor) -> None:
        """Raise ValueError for a wrong channel count or an image smaller than the total stride."""
        if img.dim() != 4 or img.shape[1] != self.in_chans:
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got {list(img.shape)}")
        H, W = img.shape[-2:]
        r = self.reduction
        if r and (H < r or W < r):
            raise ValueError(f"input {H}x{W} is too small for this model: the layout reduces the image "
                             f"by {r} in total, so H and W must be >= {r}")

    def forward_features(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        self.check_input(img)
        x, hw = self.stem(img)
        for pe in self.pos_embed:
            x = pe(x, hw)
        for stage in self.stages:
            x, hw = stage(x, hw)
        return x, hw

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x, hw = self.forward_features(img)
        return self.head(x, hw)
