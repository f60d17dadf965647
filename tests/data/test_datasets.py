"""The bundled digits, the ImageFolder / CIFAR-10 loaders and their errors."""
from __future__ import annotations

from pathlib import Path

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
    ("imagenet", "unknown data source 'imagenet'; expected default, farpairs, imagefolder:PATH or cifar10:PATH"),
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


def _images(tmp_path, size=(12, 20)):
    """Two classes x 4 PNGs of a fixed random size; returns the root and the float images by path."""
    from PIL import Image

    rng = np.random.default_rng(1)
    arrays = {}
    for c in ("a", "b"):
        (tmp_path / "t" / c).mkdir(parents=True)
        for i in range(4):
            a = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / "t" / c / f"{i}.png")
            arrays[f"{c}/{i}"] = a
    return tmp_path / "t", arrays


def test_imagefolder_preprocessing_is_stated_and_overridable(tmp_path):
    from archdsl.data import Preprocess, parse_preprocess

    root, _ = _images(tmp_path)
    b = load_data(f"imagefolder:{root}", image_size=8)                      # the default: ImageNet stats
    assert "resize to 8x8, normalise with imagenet mean (0.485, 0.456, 0.406)" in b.describe()
    raw = load_data(f"imagefolder:{root}", image_size=8, preprocess=parse_preprocess({"normalize": "none"}))
    assert "no normalisation" in raw.describe()
    x_raw = torch.cat([x for x, _ in raw.train.batches(100)])
    assert 0.0 <= float(x_raw.min()) and float(x_raw.max()) <= 1.0
    x_in = torch.cat([x for x, _ in b.train.batches(100)])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x_in, (x_raw - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    # the training split's own statistics: per channel, over every pixel of the training images
    ds = load_data(f"imagefolder:{root}", image_size=8, preprocess=Preprocess(normalize="dataset"))
    x_ds = torch.cat([x for x, _ in ds.train.batches(100)]).double()
    assert torch.allclose(x_ds.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(x_ds.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4)
    # crop keeps the aspect ratio: a 12x20 image -> 8x13 -> centre 8x8
    crop = load_data(f"imagefolder:{root}", image_size=8, preprocess=parse_preprocess(
        {"normalize": {"mean": [0, 0, 0], "std": [1, 1, 1]}, "resize": "crop"}))
    assert "resize shorter side to 8 + centre crop" in crop.describe()
    assert not torch.allclose(torch.cat([x for x, _ in crop.train.batches(100)]), x_raw)


@pytest.mark.parametrize("section, message", [
    ({"normalise": "none"}, "data.normalise: unknown preprocessing setting; expected normalize, resize"),
    ({"normalize": "imagenett"}, "data.normalize: expected one of imagenet, cifar10, dataset, none or "
                                 "{mean: [...], std: [...]}, got 'imagenett'"),
    ({"normalize": {"mean": [0, 0], "std": [1, 1, 1]}}, "data.normalize: expected {mean: [r, g, b], std: [r, g, b]}"),
    ({"resize": "pad"}, "data.resize: expected stretch or crop, got 'pad'"),
])
def test_bad_preprocessing(section, message):
    from archdsl.data import parse_preprocess

    with pytest.raises(DataError) as e:
        parse_preprocess(section)
    assert str(e.value).startswith(message)


def test_space_data_section_is_located(tmp_path):
    from archdsl.errors import SpecError
    from archdsl.search.space import load_space

    base = Path(__file__).parents[1] / "search" / "tiny_base.yaml"
    space = tmp_path / "s.yaml"
    space.write_text(f"base: {base}\nspace: {{}}\ndata:\n  normalize: dataset\n  resize: pad\n")
    with pytest.raises(SpecError) as e:
        load_space(space)
    assert str(e.value) == f"{space}:5:3: data.resize: expected stretch or crop, got 'pad'"
    space.write_text(f"base: {base}\nspace: {{}}\ndata: {{normalize: dataset, resize: crop}}\n")
    assert load_space(space).data == {"normalize": "dataset", "resize": "crop"}
