"""Semantic segmentation over any spec (ADE20K-style dense labels, ``ignore_index`` 255):
``segmenter(spec, num_classes)`` -> :class:`Segmenter` = backbone (features_only) + a registered
decoder (``upernet`` by default, archdsl/layers/decoders.py).

    model = segmenter("specs/mlla_t.yaml", num_classes=150)
    logits = model(img)                       # [B, 150, H, W] at the input size
    loss = model.loss(img, labels)            # labels [B, H, W] int64, 255 = ignore
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archdsl import registry
from archdsl.integrations.backbone import as_backbone

__all__ = ["Segmenter", "segmenter", "IGNORE_INDEX"]

IGNORE_INDEX = 255


class Segmenter(nn.Module):
    """``backbone`` (features_only) -> ``decode_head`` -> bilinear upsampling to the input size.
    ``forward(img [B, C, H, W]) -> logits [B, K, H, W]``."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.ignore_index = ignore_index

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        logits = self.decode_head(self.backbone(img))
        return F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Pixel-wise cross-entropy against ``labels [B, H, W]`` (``ignore_index`` pixels skipped)."""
        return F.cross_entropy(self(img), labels, ignore_index=self.ignore_index)


def segmenter(spec_or_model: Any, num_classes: int, overrides: Iterable[str] = (), *,
              out_indices: Optional[Sequence[int]] = None, decoder: str = "upernet",
              decoder_options: Optional[Dict[str, Any]] = None, ignore_index: int = IGNORE_INDEX) -> Segmenter:
    """A :class:`Segmenter` over a spec (compiled ``features_only``) or a compiled model, with the
    registered ``decoder`` built as ``cls(feature channels, num_classes, **decoder_options)``."""
    backbone = as_backbone(spec_or_model, overrides, out_indices=out_indices)
    head = registry.get("decoder", decoder)(list(backbone.feature_info.channels()), num_classes,
                                            **(decoder_options or {}))
    return Segmenter(backbone, head, ignore_index)
