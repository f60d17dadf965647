"""Compiled specs inside other libraries' models.

- :mod:`archdsl.integrations.torchvision`: Mask R-CNN / Faster R-CNN over any spec (an FPN on the
  backbone's multi-scale features, as torchvision's ``BackboneWithFPN``).
- :mod:`archdsl.integrations.segmentation`: semantic segmentation (ADE20K-style dense labels) with a
  registered decoder (``upernet``).
- :mod:`archdsl.integrations.timm`: archdsl specs in timm's model registry (needs timm; ``archdsl.timm``).
"""
