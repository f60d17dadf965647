"""Training: one trainer for ``archdsl train`` and the search's proxy training (a recipe of it).

    from archdsl.train import load_recipe, train
    result = train(model, load_recipe("proxy"), data, epochs=3, seed=0)

``recipe.py`` (the Recipe and its YAML files), ``data.py`` (timm transforms, loaders, samplers),
``loop.py`` (the trainer), ``checkpoint.py``, ``distributed.py`` (torchrun / DDP), ``metrics.py``,
``evaluate.py``, ``proxy.py`` (the search's recipe and the old ``TrainConfig`` / ``train_model`` names).
"""
from archdsl.train.evaluate import evaluate
from archdsl.train.loop import NonFiniteLossError, TrainResult, train
from archdsl.train.proxy import TrainConfig, proxy_recipe, train_model
from archdsl.train.recipe import Recipe, dump_recipe, load_recipe, packaged_recipes

__all__ = ["Recipe", "load_recipe", "dump_recipe", "packaged_recipes", "train", "TrainResult",
           "NonFiniteLossError", "evaluate", "proxy_recipe", "TrainConfig", "train_model"]
