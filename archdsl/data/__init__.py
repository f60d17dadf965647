"""Bundled default data set (scikit-learn digits, no download) and loaders for ImageFolder trees and a
local CIFAR-10 folder. ``load_data("default" | "imagefolder:PATH" | "cifar10:PATH", image_size=32)``."""
from archdsl.data.datasets import (
    MEAN_STD,
    DataBundle,
    DataError,
    DatasetSplit,
    TensorSplit,
    load_cifar10,
    load_data,
    load_default,
    load_imagefolder,
    parse_source,
)

__all__ = ["MEAN_STD", "DataBundle", "DataError", "DatasetSplit", "TensorSplit", "load_cifar10", "load_data",
           "load_default", "load_imagefolder", "parse_source"]
