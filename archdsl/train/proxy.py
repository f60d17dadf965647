"""The search's short proxy training: the packaged ``proxy`` recipe (``recipes/proxy.yaml``) of the
one trainer, and the names the search used before the trainer was a package.

    recipe = proxy_recipe(epochs=3, lr=4e-3)            # == load_recipe("proxy", epochs=3, lr=4e-3)
    result = train(model, recipe, data, device="cpu")  # archdsl.train.train
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch.nn as nn

from archdsl.data import DataBundle
from archdsl.train.loop import TrainResult, train
from archdsl.train.recipe import Recipe, load_recipe

__all__ = ["proxy_recipe", "TrainConfig", "train_model"]


@functools.lru_cache(maxsize=1)
def _proxy() -> Recipe:
    return load_recipe("proxy")


def proxy_recipe(**fields: Any) -> Recipe:
    """The proxy recipe with some fields changed (``flip: true|false``, the old name, sets ``hflip``)."""
    if "flip" in fields:
        flip = fields.pop("flip")
        fields.setdefault("hflip", None if flip is None else (0.5 if flip else 0.0))
    return _proxy().replace(**fields) if fields else _proxy()


TrainConfig = proxy_recipe   # the old name: TrainConfig(epochs=3, lr=2e-3) is a proxy Recipe


def train_model(model: nn.Module, data: DataBundle, cfg: Recipe, *, device: str = "cpu",
                on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """The old entry point: ``train(model, cfg, data, device=device, on_epoch_end=on_epoch)``."""
    return train(model, cfg, data, device=device, on_epoch_end=on_epoch)
