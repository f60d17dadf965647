"""The backbone every integration starts from: a spec (path / dict / loaded) or a compiled model,
made ``features_only`` (timm's convention: ``forward(img) -> [maps [B, C_i, H_i, W_i]]``)."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from torch import nn

from archdsl.compiler import build_model
from archdsl.layouts import ArchModel

__all__ = ["as_backbone"]


def as_backbone(spec_or_model: Any, overrides: Iterable[str] = (), *,
                out_indices: Optional[Sequence[int]] = None) -> nn.Module:
    """A ``features_only`` backbone. A spec is compiled with ``features_only=True`` (its
    ``features:`` section, ``overrides`` and ``out_indices`` apply); a classifier ``ArchModel`` is
    turned into its backbone in place (its head is dropped); a backbone is returned as is. Any other
    module must have ``feature_info.channels()`` and return a list of maps."""
    if isinstance(spec_or_model, ArchModel):
        if not spec_or_model.features_only or out_indices is not None:
            spec_or_model.set_features(out_indices if out_indices is not None else spec_or_model.out_indices,
                                       norm=spec_or_model.feature_norm, features_only=True)
        return spec_or_model
    if isinstance(spec_or_model, nn.Module):
        if not callable(getattr(getattr(spec_or_model, "feature_info", None), "channels", None)):
            raise TypeError(f"{type(spec_or_model).__name__} is not a backbone: it needs feature_info.channels()")
        return spec_or_model
    return build_model(spec_or_model, overrides, features_only=True, out_indices=out_indices)
