"""Data for the trainer: timm transforms for image files, per-batch augmentation for in-memory tensors,
one ``DataLoader`` per split with a ``DistributedSampler`` (every process its shard).

    bundle = load_training_data("imagefolder:/data/imagenet", recipe, image_size=224)
    loaders = make_loaders(bundle, recipe, rank=0, world=1)
    loaders.sampler.set_position(epoch, skip_batches)   # a resumed epoch starts where it stopped
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from timm.data import Mixup, create_transform
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from archdsl.data import MEAN_STD, DataBundle, DataError, TensorSplit, load_data, parse_source
from archdsl.train.recipe import Recipe

__all__ = ["load_training_data", "make_loaders", "val_loader", "Loaders", "ResumableSampler", "augment", "make_mixup",
           "BatchAugment"]


def _transforms(kind: str, recipe: Recipe, image_size: int) -> tuple[Any, Any]:
    """(train, val) timm transforms of the recipe for an image-file source."""
    mean, std = MEAN_STD[kind]
    common = dict(input_size=image_size, interpolation=recipe.interpolation, mean=mean, std=std)
    train = create_transform(is_training=True, scale=tuple(recipe.scale),
                             hflip=0.5 if recipe.hflip is None else recipe.hflip,
                             color_jitter=recipe.color_jitter, auto_augment=recipe.auto_augment,
                             re_prob=recipe.reprob, re_mode=recipe.remode, **common)
    val = create_transform(is_training=False, crop_pct=recipe.crop_pct, **common)
    return train, val


def _set_transform(split: Any, tf: Any) -> None:
    """Give a split's dataset (an ImageFolder / CIFAR10, or a Subset of one: copied) the transform ``tf``."""
    ds = split.dataset
    if isinstance(ds, Subset):
        ds.dataset = copy.copy(ds.dataset)
        ds = ds.dataset
    ds.transform = tf


def load_training_data(source: str, recipe: Recipe, *, image_size: int, seed: int = 0) -> DataBundle:
    """``default`` | ``imagefolder:PATH`` | ``cifar10:PATH`` with the recipe's transforms. Raises DataError."""
    kind, _ = parse_source(source)
    data = load_data(source, image_size=image_size, seed=seed)
    if kind != "default":
        train_tf, val_tf = _transforms(kind, recipe, image_size)
        _set_transform(data.train, train_tf)
        _set_transform(data.val, val_tf)
    return data


def _dataset(split: Any) -> Dataset:
    return TensorDataset(split.x, split.y) if isinstance(split, TensorSplit) else split.dataset


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch after its first ``skip`` batches (a resumed run
    sees exactly the samples the interrupted one had not seen yet)."""

    def __init__(self, dataset: Dataset, *, batch_size: int, **kwargs: Any):
        super().__init__(dataset, drop_last=True, **kwargs)
        self.batch_size = batch_size
        self.skip = 0

    def set_position(self, epoch: int, skip_batches: int = 0) -> None:
        self.set_epoch(epoch)
        self.skip = skip_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    sampler: ResumableSampler
    batch_per_process: int          # one micro-batch of one process
    steps_per_epoch: int            # optimizer steps per epoch
    in_memory: bool                 # tensors (per-batch augmentation) rather than image files


def make_loaders(data: DataBundle, recipe: Recipe, *, rank: int, world: int, seed: int,
                 pin_memory: bool = False) -> Loaders:
    """Loaders of one process. ``recipe.batch_size`` is global: each micro-batch of each process holds
    ``batch_size / (world * accum_steps)`` images. Validation is sharded without padding."""
    parts = world * recipe.accum_steps
    if recipe.batch_size % parts:
        raise DataError(f"batch_size {recipe.batch_size} is not divisible by processes x accum_steps "
                        f"= {world} x {recipe.accum_steps}")
    per = recipe.batch_size // parts
    train_ds = _dataset(data.train)
    sampler = ResumableSampler(train_ds, batch_size=per, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    micro = sampler.num_samples // per
    if micro < recipe.accum_steps:
        raise DataError(f"{data.name}: {len(train_ds)} training images make no full batch of "
                        f"{recipe.batch_size}; lower --batch-size")
    steps = micro // recipe.accum_steps
    if recipe.max_steps_per_epoch:
        steps = min(steps, recipe.max_steps_per_epoch)
    in_memory = isinstance(data.train, TensorSplit)
    workers = 0 if in_memory else recipe.workers
    extra = dict(num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0)
    train = DataLoader(train_ds, batch_size=per, sampler=sampler, drop_last=True, **extra)
    val = val_loader(data, batch_size=recipe.eval_batch_size or max(per, 256), workers=workers, rank=rank,
                     world=world, pin_memory=pin_memory)
    return Loaders(train, val, sampler, per, steps, in_memory)


def val_loader(data: DataBundle, *, batch_size: int, workers: int = 0, rank: int = 0, world: int = 1,
               pin_memory: bool = False) -> DataLoader:
    """This process's shard of the validation split (every ``world``-th image, no padding)."""
    val_ds = _dataset(data.val)
    shard = Subset(val_ds, range(rank, len(val_ds), world)) if world > 1 else val_ds
    if isinstance(data.val, TensorSplit):
        workers = 0
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0)


def augment(x: torch.Tensor, *, padding: int, flip: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip with probability ``flip``, per sample.
    ``x[B, C, H, W]`` -> same shape."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))                    # [B, C, H+2p, W+2p]
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (torch.arange(h)[None, :] + dy[:, None]).to(x.device)                # [B, H]
        cols = (torch.arange(w)[None, :] + dx[:, None]).to(x.device)                # [B, W]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]          # [B, C, H, W]
    if flip > 0:
        mask = (torch.rand(b, generator=generator) < flip).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


class BatchAugment:
    """The recipe's augmentation of in-memory tensor batches (image files are augmented by their
    timm transform): crop with padding, flip, random erasing. ``x[B, C, H, W]`` -> same shape."""

    def __init__(self, recipe: Recipe, data_flips: bool):
        self.padding = recipe.crop_padding
        self.flip = recipe.hflip if recipe.hflip is not None else (0.5 if data_flips else 0.0)
        self.erase = RandomErasing(recipe.reprob, mode=recipe.remode, device="cpu") if recipe.reprob > 0 else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = augment(x, padding=self.padding, flip=self.flip)
        return self.erase(x) if self.erase is not None else x


def make_mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    """timm's Mixup / CutMix of the recipe (soft, smoothed targets), or None when both are off."""
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                 switch_prob=recipe.mixup_switch_prob, label_smoothing=recipe.label_smoothing,
                 num_classes=num_classes)
