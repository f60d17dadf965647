"""The bundled digits, the ImageFolder / CIFAR-10 loaders and their errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from archdsl.data import DataError, load_data, load_default, parse_source


def test_default_shapes_split_and_normalisation():
    b = load_default(image_size=32)
    assert (len(b.train), len(b.val)) == (1437, 360)          # 1797 digits, 20 % held out
    assert b.train.x.shape == (1437, 3, 32, 32) and b.train.x.dtype == torch.float32
    assert b.val.x.shape == (360, 3, 32, 32) and b.train.y.dtype == torch.long
    assert (b.num_classes, b.in_chans, b.image_size, b.flip) == (10, 3, 32, False)
    # stratified: every class has 35-37 validation images (class sizes are 174-183)
    counts = torch.bincount(b.val.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37, counts
    # normalised with the training split's statistics; the three channels are copies
    assert abs(float(b.train.x.mean())) < 1e-4 and abs(float(b.train.x.std()) - 1) < 1e-4
    assert torch.equal(b.train.x[:, 0], b.train.x[:, 2])


def test_default_split_is_fixed_and_a_partition():
    from collections import Counter

    from sklearn.datasets import load_digits

    a, b = load_default(image_size=8), load_default(image_size=8)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    # at 8x8 nothing is resampled: undo the affine normalisation (raw 0 -> min, raw 16 -> max) and the
    # train + val images are exactly the 1797 digits, each once (with their labels)
    x = torch.cat([a.train.x, a.val.x])[:, 0].flatten(1)                          # [1797, 64]
    y = torch.cat([a.train.y, a.val.y])
    raw_hat = ((x - x.min()) / (x.max() - x.min()) * 16).round().to(torch.int64)
    digits = load_digits()
    got = Counter((tuple(r.tolist()), int(t)) for r, t in zip(raw_hat, y))
    want = Counter((tuple(int(v) for v in r), int(t)) for r, t in zip(digits.data, digits.target))
    assert got == want


def test_batches_cover_the_split_once():
    b = load_default(image_size=16)
    ys = torch.cat([y for _, y in b.train.batches(100, shuffle=True, seed=3)])
    assert ys.numel() == len(b.train) and torch.equal(ys.sort().values, b.train.y.sort().values)
    first = next(b.train.batches(100, shuffle=True, seed=3))[1]
    assert torch.equal(first, next(b.train.batches(100, shuffle=True, seed=3))[1])
    assert not torch.equal(first, next(b.train.batches(100, shuffle=True, seed=4))[1])
    assert sum(1 for _ in b.train.batches(100, drop_last=True)) == 14


def _write_tree(root, classes=("cat", "dog"), n=5, size=(12, 10)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_single_tree_is_split(tmp_path):
    _write_tree(tmp_path / "imgs", n=5)
    b = load_data(f"imagefolder:{tmp_path / 'imgs'}", image_size=16)
    assert (len(b.train), len(b.val), b.num_classes, tuple(b.classes)) == (8, 2, 2, ("cat", "dog"))
    x, y = next(b.train.batches(8))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.long
    assert sorted(next(b.val.batches(2))[1].tolist()) == [0, 1]                     # stratified


def test_imagefolder_train_val_folders(tmp_path):
    _write_tree(tmp_path / "train", n=3)
    _write_tree(tmp_path / "val", n=2)
    b = load_data(f"imagefolder:{tmp_path}", image_size=8)
    assert (len(b.train), len(b.val), b.flip) == (6, 4, True)


@pytest.mark.parametrize("source, message", [
    ("imagefolder:/nonexistent/x", "imagefolder path '/nonexistent/x' is not a directory; expected "
                                   "PATH/<class>/<image> (or PATH/train and PATH/val)"),
    ("cifar10:/nonexistent/c", "cifar10 path '/nonexistent/c' has no 'cifar-10-batches-py' folder; expected "
                               "the extracted python version of CIFAR-10 (nothing is downloaded)"),
    ("imagenet", "unknown data source 'imagenet'; expected default, imagefolder:PATH or cifar10:PATH"),
    ("imagefolder:", "data source 'imagefolder:' needs a path: 'imagefolder:PATH'"),
])
def test_bad_sources(source, message):
    with pytest.raises(DataError) as e:
        load_data(source)
    assert str(e.value) == message


def test_empty_imagefolder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"imagefolder path '.*empty' has no usable images"):
        load_data(f"imagefolder:{tmp_path / 'empty'}")


def test_parse_source():
    assert parse_source("default") == ("default", None)
    assert parse_source("cifar10:/d/c:x") == ("cifar10", "/d/c:x")


def test_cli_bad_data_path_exit_2(capsys):
    from archdsl.cli import main

    rc = main(["search", "--data", "imagefolder:/nonexistent/x", "--budget", "1", "--out", "/tmp/unused"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == ("archdsl search: error: imagefolder path '/nonexistent/x' is not a directory; expected "
                   "PATH/<class>/<image> (or PATH/train and PATH/val)")
