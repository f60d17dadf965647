"""Bundled data sets (scikit-learn digits, no download; the generated ``farpairs`` task) and loaders for
ImageFolder trees and a local CIFAR-10 folder.
``load_data("default" | "farpairs" | "imagefolder:PATH" | "cifar10:PATH", image_size=32, preprocess=...)``."""
from archdsl.data.datasets import (
    MEAN_STD,
    DataBundle,
    DataError,
    DatasetSplit,
    Preprocess,
    TensorSplit,
    load_cifar10,
    load_data,
    load_default,
    load_farpairs,
    load_imagefolder,
    parse_preprocess,
    parse_source,
)

__all__ = ["MEAN_STD", "DataBundle", "DataError", "DatasetSplit", "TensorSplit", "load_cifar10", "load_data",
           "load_default", "load_imagefolder", "parse_source", "Preprocess", "parse_preprocess", "load_farpairs"]
