"""torchvision detection over any spec: ``mask_rcnn(spec, num_classes)`` / ``faster_rcnn(...)``.

The backbone (``features_only``) feeds torchvision's ``FeaturePyramidNetwork`` exactly as
``torchvision.models.detection.backbone_utils.BackboneWithFPN`` does (whose ``IntermediateLayerGetter``
cannot reach inside a compiled model): ``img [B, 3, H, W] -> {"0": P_0, ..., "pool": P_top}``, every
map with ``out_channels`` channels. Anchor sizes (32, 64, ... per level) and the RoI poolers follow
the number of levels, so any ``out_indices`` works; other keyword arguments go to torchvision
(``min_size``, ``max_size``, ``box_batch_size_per_image``, ``mask_head``...; with ``box_predictor``
given, the predictors define the classes).

    detector = mask_rcnn("runs/search/pareto/trial_5.yaml", num_classes=91)
    losses = detector(images, targets)          # train mode: dict of the five losses
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterable, Optional, Sequence

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool

from archdsl.integrations.backbone import as_backbone

__all__ = ["BackboneFPN", "backbone_with_fpn", "faster_rcnn", "mask_rcnn"]


class BackboneFPN(nn.Module):
    """``body`` (a features_only backbone) then ``fpn`` (torchvision ``FeaturePyramidNetwork``, with
    ``LastLevelMaxPool`` by default). ``forward(img) -> OrderedDict {"0": [B, out, H_0, W_0], ...,
    "pool": ...}``; attribute ``out_channels`` (what torchvision's detectors read)."""

    def __init__(self, body: nn.Module, out_channels: int = 256, extra_blocks: Optional[ExtraFPNBlock] = None,
                 norm_layer: Any = None):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(list(body.feature_info.channels()), out_channels,
                                         extra_blocks=extra_blocks or LastLevelMaxPool(), norm_layer=norm_layer)
        self.out_channels = out_channels

    @property
    def level_names(self) -> list:
        """Names of the backbone levels (the RoI poolers' ``featmap_names``)."""
        return [str(i) for i in range(len(self.body.feature_info))]

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.body(img)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def backbone_with_fpn(spec_or_model: Any, overrides: Iterable[str] = (), *, out_indices: Optional[Sequence[int]] = None,
                      out_channels: int = 256, **fpn_options: Any) -> BackboneFPN:
    """A :class:`BackboneFPN` over a spec (compiled ``features_only``) or a compiled model."""
    return BackboneFPN(as_backbone(spec_or_model, overrides, out_indices=out_indices), out_channels, **fpn_options)


def _detector_defaults(fpn: BackboneFPN, kwargs: Dict[str, Any], mask: bool) -> Dict[str, Any]:
    """Anchors and RoI poolers sized to the number of FPN levels (caller's kwargs win)."""
    names = fpn.level_names
    sizes = tuple((32 * 2 ** i,) for i in range(len(names) + 1))  # + the "pool" level
    out = {"rpn_anchor_generator": AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
           "box_roi_pool": MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)}
    if mask:
        out["mask_roi_pool"] = MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2)
    out.update(kwargs)
    return out


def _num_classes(num_classes: int, kwargs: Dict[str, Any]) -> Optional[int]:
    """torchvision wants ``num_classes=None`` when the caller gives the predictors."""
    return None if kwargs.get("box_predictor") is not None else num_classes


def faster_rcnn(spec_or_model: Any, num_classes: int, overrides: Iterable[str] = (), *,
                out_indices: Optional[Sequence[int]] = None, out_channels: int = 256, **kwargs: Any) -> FasterRCNN:
    """torchvision ``FasterRCNN`` with a :class:`BackboneFPN` over the spec / model."""
    fpn = backbone_with_fpn(spec_or_model, overrides, out_indices=out_indices, out_channels=out_channels)
    return FasterRCNN(fpn, num_classes=_num_classes(num_classes, kwargs), **_detector_defaults(fpn, kwargs, mask=False))


def mask_rcnn(spec_or_model: Any, num_classes: int, overrides: Iterable[str] = (), *,
              out_indices: Optional[Sequence[int]] = None, out_channels: int = 256, **kwargs: Any) -> MaskRCNN:
    """torchvision ``MaskRCNN`` with a :class:`BackboneFPN` over the spec / model (the paper's COCO
    setting: ``mask_rcnn("specs/mlla_t.yaml", 91)`` with the official backbone's ``features.norm``)."""
    fpn = backbone_with_fpn(spec_or_model, overrides, out_indices=out_indices, out_channels=out_channels)
    return MaskRCNN(fpn, num_classes=_num_classes(num_classes, kwargs), **_detector_defaults(fpn, kwargs, mask=True))
