"""Image-classification data for the search's training proxy.

``load_data(source, image_size=32)`` returns a :class:`DataBundle` for one of

* ``default``            -- scikit-learn's handwritten digits (1797 images, 10 classes, shipped inside
  scikit-learn: no download), up-sampled from 8x8 to ``image_size`` (bilinear), repeated to 3 channels,
  normalised with the training split's mean/std; a fixed stratified 80/20 split (seed 0). In memory.
* ``farpairs``           -- a generated task (``archdsl.data.farpairs``): are two glyphs at opposite
  ends of the image the same colour? 2000 train / 1000 val images, 2 classes, separates global token
  mixers from local ones (docs/search.md). In memory, per-channel normalised, deterministic.
* ``imagefolder:PATH``   -- a torchvision ``ImageFolder`` tree. If PATH has ``train/`` and ``val/`` (or
  ``test/``) sub-folders they are the two splits; otherwise a seeded stratified 80/20 split of the one tree.
* ``cifar10:PATH``       -- a local CIFAR-10 folder (``cifar-10-batches-py`` in PATH or PATH itself),
  read with torchvision's ``CIFAR10(download=False)``; validation = the test split.

Folder sources (``imagefolder``, ``cifar10``) are read with a torchvision transform that
:class:`Preprocess` describes and a space's ``data:`` section sets: ``normalize`` (``imagenet``, the
default for ``imagefolder``; ``cifar10``, the default for ``cifar10``; ``dataset``: the training split's
own per-channel mean/std, one pass over it; ``none``; or ``{mean: [r, g, b], std: [r, g, b]}``) and
``resize`` (``stretch``: to S x S, the aspect ratio is not kept (default); ``crop``: the shorter side to S,
then a centre crop). ``DataBundle.describe()`` states the transform (the search prints it).

Every bundle yields batches ``(x[B, 3, S, S] float32 normalised, y[B] int64)``; augmentation
(random crop with padding, optional horizontal flip) is applied per batch by the training loop
(``archdsl.train``), so all sources share it. A bad source raises :class:`DataError` naming the path
and what was expected (the CLI turns it into exit code 2).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from archdsl.data.farpairs import render_farpairs
from archdsl.data.images import find_bad_images

__all__ = ["DataError", "DataBundle", "TensorSplit", "Preprocess", "parse_preprocess", "load_data", "load_default",
           "load_farpairs", "load_imagefolder", "load_cifar10", "parse_source", "MEAN_STD"]

# Channel statistics used for the folder sources (ImageNet's; CIFAR-10's own are close to these).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)
NORMALIZE_PRESETS = {"imagenet": (_IMAGENET_MEAN, _IMAGENET_STD), "cifar10": (_CIFAR_MEAN, _CIFAR_STD)}
PREPROCESS_KEYS = ("normalize", "resize")
RESIZE_MODES = ("stretch", "crop")
# per source kind: the (mean, std) image files are normalised with
MEAN_STD = {"imagefolder": (_IMAGENET_MEAN, _IMAGENET_STD), "cifar10": (_CIFAR_MEAN, _CIFAR_STD)}


class DataError(ValueError):
    """A data source that cannot be used (missing path, wrong layout, unknown source kind)."""


class TensorSplit:
    """An in-memory split: ``x[N, C, S, S]`` float32, ``y[N]`` int64. Iterates in batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x[B, C, S, S], y[B])``; with ``shuffle`` the order is a permutation drawn from ``seed``."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield self.x[idx], self.y[idx]


class DatasetSplit:
    """A split backed by a torch ``Dataset`` (ImageFolder, CIFAR10, or a Subset of them)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                            drop_last=drop_last and len(self) >= batch_size, num_workers=0)
        for x, y in loader:
            yield x, torch.as_tensor(y, dtype=torch.long)


@dataclass
class DataBundle:
    """Train and validation splits plus what a model needs to know about them."""

    name: str
    train: Any                      # TensorSplit | DatasetSplit
    val: Any
    num_classes: int
    image_size: int
    in_chans: int = 3
    flip: bool = True               # horizontal flip is a sensible augmentation (not for digits)
    classes: Sequence[str] = field(default_factory=tuple)
    skipped: list = field(default_factory=list)   # [(path, reason)]: bad images left out (skip_bad_images)
    preprocessing: str = ""         # how images became tensors, in words (printed by the search)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
                f"{self.num_classes} classes, {self.in_chans}x{self.image_size}x{self.image_size}"
                + (f" ({self.preprocessing})" if self.preprocessing else ""))


@dataclass(frozen=True)
class Preprocess:
    """How folder images become tensors (see the module docstring). ``normalize``: None (the source's
    default), a preset name, ``"dataset"``, ``"none"`` or ``(mean, std)``; ``resize``: stretch | crop."""

    normalize: Any = None
    resize: str = "stretch"


def parse_preprocess(section: dict | None) -> Preprocess:
    """A space's ``data:`` mapping -> :class:`Preprocess`; DataError naming ``data.KEY`` otherwise."""
    section = dict(section or {})
    for key in section:
        if key not in PREPROCESS_KEYS:
            raise DataError(f"data.{key}: unknown preprocessing setting; expected {', '.join(PREPROCESS_KEYS)}")
    norm = section.get("normalize")
    if isinstance(norm, dict):
        stats = [norm.get(k) for k in ("mean", "std")]
        if set(norm) != {"mean", "std"} or not all(isinstance(v, list) and len(v) == 3 and
                                                    all(isinstance(c, (int, float)) for c in v) for v in stats):
            raise DataError(f"data.normalize: expected {{mean: [r, g, b], std: [r, g, b]}}, got {norm!r}")
        if min(stats[1]) <= 0:
            raise DataError(f"data.normalize: std must be positive, got {stats[1]}")
        norm = (tuple(map(float, stats[0])), tuple(map(float, stats[1])))
    elif norm is not None and norm not in (*NORMALIZE_PRESETS, "dataset", "none"):
        raise DataError(f"data.normalize: expected one of {', '.join(NORMALIZE_PRESETS)}, dataset, none or "
                        f"{{mean: [...], std: [...]}}, got {norm!r}")
    resize = section.get("resize", "stretch")
    if resize not in RESIZE_MODES:
        raise DataError(f"data.resize: expected stretch or crop, got {resize!r}")
    return Preprocess(normalize=norm, resize=resize)


def parse_source(source: str) -> tuple[str, str | None]:
    """``"imagefolder:/data/x"`` -> ``("imagefolder", "/data/x")``; ``"default"`` -> ``("default", None)``."""
    kind, sep, path = str(source).partition(":")
    kind = kind.strip().lower()
    if kind in ("default", "farpairs") and not sep:
        return kind, None
    if kind in ("imagefolder", "cifar10"):
        if not path:
            raise DataError(f"data source '{source}' needs a path: '{kind}:PATH'")
        return kind, path
    raise DataError(f"unknown data source '{source}'; expected default, farpairs, imagefolder:PATH or "
                    f"cifar10:PATH")


def load_data(source: str = "default", *, image_size: int = 32, seed: int = 0,
              skip_bad_images: bool = False, preprocess: Preprocess | None = None) -> DataBundle:
    """Load a data source (see the module docstring). ``seed`` fixes any train/val split drawn here;
    ``skip_bad_images``: see :func:`load_imagefolder`; ``preprocess`` applies to folder sources
    (DataError for the in-memory ones)."""
    kind, path = parse_source(source)
    if kind in ("imagefolder", "cifar10"):
        pre = preprocess or Preprocess()
        if kind == "imagefolder":
            return load_imagefolder(path, image_size=image_size, seed=seed, preprocess=pre,
                                    skip_bad_images=skip_bad_images)
        return load_cifar10(path, image_size=image_size, preprocess=pre)
    if preprocess not in (None, Preprocess()):
        raise DataError(f"data.normalize / data.resize apply to imagefolder and cifar10 sources; '{kind}' is "
                        f"generated in memory (see its preprocessing in the search header)")
    if kind == "default":
        return load_default(image_size=image_size, seed=seed)
    return load_farpairs(image_size=image_size, seed=seed)


_DEFAULT_CACHE: dict[tuple, DataBundle] = {}


def load_default(*, image_size: int = 32, seed: int = 0, val_fraction: float = 0.2) -> DataBundle:
    """The bundled digits: 1437 train / 360 val images of ``[3, image_size, image_size]``, 10 classes."""
    key = (image_size, seed)
    if key in _DEFAULT_CACHE:
        return _DEFAULT_CACHE[key]
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0      # [N, 8, 8] in [0, 1]
    labels = torch.tensor(digits.target, dtype=torch.long)                 # [N]
    tr_idx, va_idx = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed,
                                      stratify=digits.target)
    x = images[:, None]                                                   # [N, 1, 8, 8]
    if image_size != 8:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                            align_corners=False)
    tr_idx, va_idx = torch.as_tensor(np.sort(tr_idx)), torch.as_tensor(np.sort(va_idx))
    mean, std = x[tr_idx].mean(), x[tr_idx].std()
    x = ((x - mean) / std).repeat(1, 3, 1, 1).contiguous()                # [N, 3, S, S]
    bundle = DataBundle(name="default (sklearn digits)", train=TensorSplit(x[tr_idx], labels[tr_idx]),
                        val=TensorSplit(x[va_idx], labels[va_idx]), num_classes=10,
                        image_size=image_size, in_chans=3, flip=False,
                        classes=tuple(str(i) for i in range(10)),
                        preprocessing=f"8x8 -> {image_size}x{image_size} bilinear, grey repeated to 3 channels, "
                                      f"normalised by the training split's mean/std")
    _DEFAULT_CACHE[key] = bundle
    return bundle


def load_farpairs(*, image_size: int = 32, seed: int = 0, n_train: int = 2000, n_val: int = 1000) -> DataBundle:
    """The generated ``farpairs`` task (see :mod:`archdsl.data.farpairs`): ``[3, image_size, image_size]``
    images (rendered at 32x32, resized with nearest neighbours otherwise), 2 classes, per-channel
    normalised with the training split's statistics. Train and val are drawn from disjoint seeds."""
    key = ("farpairs", image_size, seed, n_train, n_val)
    if key in _DEFAULT_CACHE:
        return _DEFAULT_CACHE[key]
    xt, yt = render_farpairs(n_train, seed=2 * seed)
    xv, yv = render_farpairs(n_val, seed=2 * seed + 1)
    if image_size != xt.shape[-1]:
        xt, xv = (torch.nn.functional.interpolate(v, size=(image_size, image_size), mode="nearest")
                  for v in (xt, xv))
    mean, std = xt.mean((0, 2, 3), keepdim=True), xt.std((0, 2, 3), keepdim=True)
    bundle = DataBundle(name="farpairs (same colour at a distance)", train=TensorSplit((xt - mean) / std, yt),
                        val=TensorSplit((xv - mean) / std, yv), num_classes=2, image_size=image_size,
                        in_chans=3, flip=True, classes=("different", "same"),
                        preprocessing="rendered at 32x32, per-channel mean/std of the training split"
                                      + (f", nearest resize to {image_size}" if image_size != 32 else ""))
    _DEFAULT_CACHE[key] = bundle
    return bundle


def _folder_transform(image_size: int, resize: str, stats: tuple | None):
    """PIL image -> ``[3, S, S]`` float tensor: RGB, resize (stretch | crop), ToTensor, Normalize(stats)."""
    from torchvision import transforms

    size = [transforms.Resize((image_size, image_size))] if resize == "stretch" else \
        [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    norm = [transforms.Normalize(*stats)] if stats is not None else []
    return transforms.Compose([transforms.Lambda(_to_rgb), *size, transforms.ToTensor(), *norm])


def _to_rgb(im: Any) -> Any:
    return im.convert("RGB")


def _channel_stats(dataset: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a dataset of ``[3, S, S]`` tensors (one pass, float64 sums)."""
    from torch.utils.data import DataLoader

    total, sq, n = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for x, _ in DataLoader(dataset, batch_size=256, num_workers=0):
        x = x.double()
        total += x.sum((0, 2, 3))
        sq += (x * x).sum((0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(1, n)
    std = (sq / max(1, n) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _apply_preprocess(datasets: list, train: Any, image_size: int, pre: Preprocess, default: str) -> str:
    """Set the transform of the torchvision ``datasets`` (``train``: the training split, read once for
    ``normalize: dataset``); returns the transform in words."""
    norm = default if pre.normalize is None else pre.normalize
    stats = NORMALIZE_PRESETS.get(norm) if isinstance(norm, str) else norm
    if norm == "dataset":
        for d in datasets:
            d.transform = _folder_transform(image_size, pre.resize, None)
        stats = _channel_stats(train)
    for d in datasets:
        d.transform = _folder_transform(image_size, pre.resize, None if norm == "none" else stats)
    size = f"resize to {image_size}x{image_size}" if pre.resize == "stretch" else \
        f"resize shorter side to {image_size} + centre crop"
    if norm == "none":
        how = "no normalisation"
    else:
        name = f"{norm} " if isinstance(norm, str) else ""
        how = (f"normalise with {name}mean {tuple(round(v, 4) for v in stats[0])} std "
               f"{tuple(round(v, 4) for v in stats[1])}")
    return f"RGB, {size}, {how}"


def load_imagefolder(path: str | os.PathLike, *, image_size: int = 32, seed: int = 0,
                     val_fraction: float = 0.2, skip_bad_images: bool = False,
                     preprocess: Preprocess | None = None) -> DataBundle:
    """An ImageFolder tree (``PATH/<class>/<image>``), or ``PATH/train`` + ``PATH/val|test``.

    Every file is checked first (:func:`archdsl.data.images.find_bad_images`): a file that is not a
    readable image raises :class:`DataError` naming it, or with ``skip_bad_images`` is left out and
    listed in ``DataBundle.skipped``."""
    from torchvision.datasets import ImageFolder

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder path '{path}' is not a directory; expected PATH/<class>/<image> "
                        f"(or PATH/train and PATH/val)")

    skipped: list[tuple[str, str]] = []

    def open_tree(d: Path):
        try:
            ds = ImageFolder(str(d))
        except (FileNotFoundError, RuntimeError) as e:   # no class folders / no images
            raise DataError(f"imagefolder path '{d}' has no usable images: {e}; expected "
                            f"<class>/<image> sub-folders") from e
        skipped.extend(_drop_bad_images(ds, skip_bad_images))
        return ds

    val_dir = next((root / n for n in ("val", "validation", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        train_ds, val_ds = open_tree(root / "train"), open_tree(val_dir)
        if train_ds.classes != val_ds.classes:
            raise DataError(f"imagefolder '{root}': train classes {train_ds.classes} differ from "
                            f"{val_dir.name} classes {val_ds.classes}")
        classes, datasets = train_ds.classes, [train_ds, val_ds]
        train, val = DatasetSplit(train_ds), DatasetSplit(val_ds)
    else:
        from sklearn.model_selection import train_test_split
        from torch.utils.data import Subset

        full = open_tree(root)
        targets = np.asarray(full.targets)
        counts = np.bincount(targets)
        stratify = targets if counts.min() >= 2 and len(targets) * val_fraction >= len(counts) else None
        if len(targets) < 2:
            raise DataError(f"imagefolder '{root}' has {len(targets)} image(s); need at least 2 to split")
        tr_idx, va_idx = train_test_split(np.arange(len(targets)), test_size=val_fraction,
                                          random_state=seed, stratify=stratify)
        classes, datasets = full.classes, [full]
        train = DatasetSplit(Subset(full, sorted(tr_idx.tolist())))
        val = DatasetSplit(Subset(full, sorted(va_idx.tolist())))
    how = _apply_preprocess(datasets, train.dataset, image_size, preprocess or Preprocess(), "imagenet")
    return DataBundle(name=f"imagefolder:{root.resolve()}", train=train, val=val, num_classes=len(classes),
                      image_size=image_size, in_chans=3, flip=True, classes=tuple(classes), skipped=skipped,
                      preprocessing=how)


def _drop_bad_images(ds: Any, skip: bool) -> list[tuple[str, str]]:
    """Check an ImageFolder's files; raise on the first bad one, or (``skip``) leave the bad ones out."""
    bad = find_bad_images([p for p, _ in ds.samples])
    if bad and not skip:
        more = f" ({len(bad) - 1} more bad file(s) in the folder)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0][0]}: not a readable image ({bad[0][1]}){more}; remove it, or pass "
                        f"--skip-bad-images to leave bad files out")
    if bad:
        gone = {p for p, _ in bad}
        ds.samples = [s for s in ds.samples if s[0] not in gone]
        ds.imgs, ds.targets = ds.samples, [t for _, t in ds.samples]
        if not ds.samples:
            raise DataError(f"imagefolder path '{ds.root}' has no readable image ({len(bad)} bad file(s))")
    return bad


def load_cifar10(path: str | os.PathLike, *, image_size: int = 32, preprocess: Preprocess | None = None) -> DataBundle:
    """A local CIFAR-10 (python version): PATH contains ``cifar-10-batches-py/`` (or is it)."""
    from torchvision.datasets import CIFAR10

    root = Path(path).expanduser()
    if root.name == "cifar-10-batches-py":
        root = root.parent
    if not (root / "cifar-10-batches-py").is_dir():
        raise DataError(f"cifar10 path '{path}' has no 'cifar-10-batches-py' folder; expected the "
                        f"extracted python version of CIFAR-10 (nothing is downloaded)")
    try:
        train_ds = CIFAR10(str(root), train=True, download=False)
        val_ds = CIFAR10(str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError) as e:   # torchvision: "Dataset not found or corrupted"
        raise DataError(f"cifar10 path '{path}' is not a readable CIFAR-10 folder: {e}") from e
    how = _apply_preprocess([train_ds, val_ds], train_ds, image_size, preprocess or Preprocess(), "cifar10")
    return DataBundle(name=f"cifar10:{root}", train=DatasetSplit(train_ds), val=DatasetSplit(val_ds),
                      num_classes=10, image_size=image_size, in_chans=3, flip=True,
                      classes=tuple(train_ds.classes), preprocessing=how)
