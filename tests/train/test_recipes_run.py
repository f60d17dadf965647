"""The paper's recipe on image files (timm transforms with RandAugment and erasing in DataLoader
workers, Mixup/CutMix, EMA, bf16 autocast, gradient accumulation) runs end to end; accumulation and
the per-process batch split do not change the arithmetic."""
from __future__ import annotations

import csv

import numpy as np
import torch
from PIL import Image
from train_helpers import TINY

from archdsl.cli import main
from archdsl.compiler import build_model
from archdsl.data import load_default
from archdsl.train import load_recipe, train


def _folder(root, n_per_class=12):
    """Two classes of 20x20 RGB images (dark / bright), PATH/train and PATH/val."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("val", 4)):
        for c, base in enumerate((40, 200)):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                px = np.clip(base + rng.integers(-30, 30, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(d / f"{i}.png")
    return root


def test_the_paper_recipe_runs_on_an_image_folder(tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    out = tmp_path / "run"
    argv = ["train", TINY, "--set", "num_classes=2", "--data", f"imagefolder:{data}", "--out", str(out),
            "--recipe", "imagenet_300ep", "--epochs", "2", "--batch-size", "8", "--accum-steps", "2",
            "--workers", "2", "--amp", "bf16", "--recipe-set", "warmup_epochs=1", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["ema_top1"] != "" for r in rows)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["global_step"] == 2 * (24 // 8) and ckpt["ema"] is not None and ckpt["recipe"]["mixup"] == 0.8
    assert main(["eval", TINY, "--set", "num_classes=2", "--weights", str(out / "best.pt"), "--ema", "--data",
                 f"imagefolder:{data}", "--device", "cpu", "--workers", "0"]) == 0
    assert "(8 images of imagefolder:" in capsys.readouterr().out


def test_accumulation_matches_one_big_batch():
    data = load_default(image_size=16)
    recipe = load_recipe("proxy", ["crop_padding=0", "max_steps_per_epoch=4"], batch_size=32, lr=1e-2)
    runs = []
    for accum in (1, 4):
        torch.manual_seed(0)
        runs.append(train(build_model(TINY), recipe.replace(accum_steps=accum), data, epochs=1).step_losses)
    assert len(runs[0]) == 4
    for other in runs[1:]:
        assert all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(runs[0], other)), (runs[0], other)
