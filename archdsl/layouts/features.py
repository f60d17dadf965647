"""Feature outputs with timm's conventions: :class:`FeatureInfo` and index selection.

A *feature* is one multi-scale output of a compiled model: the output of stage ``i`` before its
downsample (hierarchical layout, as the official MLLA / Swin detection backbones) or of block ``i``
(isotropic layout). Each is described by a dict ``{"num_chs", "reduction", "module", "index"}``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

Indices = Optional[Union[int, Sequence[int]]]

__all__ = ["FeatureInfo", "take_indices", "default_out_indices"]


class FeatureInfo(list):
    """A list of feature dicts ``{num_chs, reduction, module, index}`` with timm's accessors.

    ``channels()``, ``reduction()``, ``module_name()`` give one value per entry (``idx=None``), for
    the entry at position ``idx`` (an int) or for several positions (a list), as
    ``timm.models.FeatureInfo``; being a list, timm's ``create_model(features_only=True)`` accepts it
    as a model's ``feature_info``."""

    def __init__(self, dicts: Sequence[Dict[str, Any]] = ()):
        super().__init__(dict(d) for d in dicts)

    @property
    def out_indices(self) -> Tuple[int, ...]:
        """The feature index (stage or block) of every entry."""
        return tuple(int(d["index"]) for d in self)

    def get(self, key: str, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        if idx is None:
            return [d[key] for d in self]
        if isinstance(idx, (list, tuple)):
            return [self[i][key] for i in idx]
        return self[idx][key]

    def get_dicts(self, keys: Optional[Sequence[str]] = None,
                  idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        pick = (lambda d: dict(d)) if keys is None else (lambda d: {k: d[k] for k in keys})
        if idx is None:
            return [pick(d) for d in self]
        if isinstance(idx, (list, tuple)):
            return [pick(self[i]) for i in idx]
        return pick(self[idx])

    def channels(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        return self.get("module", idx)

    def select(self, indices: Sequence[int]) -> "FeatureInfo":
        """The entries whose feature ``index`` is in ``indices`` (absolute), in that order."""
        by_index = {int(d["index"]): d for d in self}
        return FeatureInfo([by_index[i] for i in indices])


def take_indices(num_features: int, indices: Indices = None) -> Tuple[List[int], int]:
    """timm's ``feature_take_indices``: ``None`` -> all, an int ``n`` -> the last ``n``, a sequence ->
    those indices (negative ones count from the end). Returns ``(absolute indices, their max)``.
    Raises ValueError for an index out of range, a repeat, or a decreasing order."""
    if indices is None:
        indices = num_features
    if isinstance(indices, bool):
        raise ValueError(f"feature indices must be an int or a list of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"last-n feature count {indices} is out of range (1 to {num_features})")
        taken = list(range(num_features - indices, num_features))
    else:
        taken = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"feature indices must be ints, got {i!r}")
            j = num_features + i if i < 0 else i
            if not 0 <= j < num_features:
                raise ValueError(f"feature index {i} is out of range (the model has {num_features} "
                                 f"features: 0..{num_features - 1}, or negative from the end)")
            taken.append(j)
        if not taken:
            raise ValueError("feature indices must not be empty")
        if any(b <= a for a, b in zip(taken, taken[1:])):
            raise ValueError(f"feature indices must be increasing without repeats, got {list(indices)}")
    return taken, max(taken)


def default_out_indices(layout: str, num_features: int) -> Tuple[int, ...]:
    """Hierarchical: every stage. Isotropic: four evenly spaced blocks ending with the last
    (12 blocks -> 2, 5, 8, 11), fewer when the model has fewer blocks."""
    if layout != "isotropic":
        return tuple(range(num_features))
    return tuple(sorted({num_features * (k + 1) // 4 - 1 for k in range(4)} - {-1}))
