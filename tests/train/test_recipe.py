"""Recipes: the paper's defaults, packaged files, extends, overrides, located errors."""
from __future__ import annotations

import pytest

from archdsl.errors import SpecError
from archdsl.train import Recipe, load_recipe, packaged_recipes, proxy_recipe


def test_defaults_are_the_papers_recipe():
    r = Recipe()
    assert (r.opt, r.weight_decay, r.sched, r.warmup_epochs, r.epochs) == ("adamw", 0.05, "cosine", 20, 300)
    assert (r.label_smoothing, r.mixup, r.cutmix, r.reprob, r.grad_clip) == (0.1, 0.8, 1.0, 0.25, 5.0)
    assert r.auto_augment.startswith("rand-m9") and r.drop_path is None
    assert r.peak_lr() == pytest.approx(4e-3)                  # 1e-3 x 4096 / 1024: the paper's 4e-3
    assert r.replace(batch_size=1024).peak_lr() == pytest.approx(1e-3)
    assert load_recipe("imagenet_300ep") == Recipe(ema=True)  # the file states every default (EMA on)
    assert load_recipe("recipes/imagenet_300ep.yaml") == load_recipe("imagenet_300ep")
    assert packaged_recipes() == ["imagenet_300ep", "proxy"]


def test_overrides_flags_and_the_proxy():
    r = load_recipe("imagenet_300ep", ["mixup=0", "opt_betas=[0.9, 0.95]", "auto_augment=null"], epochs=10,
                    batch_size=None)
    assert (r.mixup, r.opt_betas, r.auto_augment, r.epochs, r.batch_size) == (0.0, (0.9, 0.95), None, 10, 4096)
    p = proxy_recipe(epochs=5, flip=True)
    assert (p.epochs, p.hflip, p.lr, p.batch_size, p.mixup, p.crop_padding) == (5, 0.5, 2e-3, 128, 0.0, 2)
    assert load_recipe("proxy", lr="4.0e-3").lr == 4e-3    # numeric strings (YAML 1.1's 4e-3) are numbers


def test_extends_merges_and_unknown_fields_are_located(tmp_path):
    (tmp_path / "short.yaml").write_text("extends: imagenet_300ep\nepochs: 30\n")
    assert load_recipe(str(tmp_path / "short.yaml")) == Recipe(ema=True, epochs=30)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 30\nmixupp: 0.5\n")
    with pytest.raises(SpecError) as e:
        load_recipe(str(bad))
    assert str(e.value) == f"{bad}:2:1: mixupp: unknown recipe field 'mixupp' (did you mean 'mixup'?)"
    bad.write_text("extends: short.yaml\namp: bf61\n")
    with pytest.raises(SpecError) as e:
        load_recipe(str(bad))
    assert str(e.value) == f"{bad}:2:1: amp: expected one of 'none', 'bf16', 'fp16', got 'bf61' (did you mean 'bf16'?)"
    with pytest.raises(SpecError, match=r"^<--recipe-set epochs=0>: epochs: must be >= 1, got 0$"):
        load_recipe(None, ["epochs=0"])
    with pytest.raises(SpecError, match=r"^recipe not found: 'nope.yaml' \(a YAML file, or one of imagenet_300ep, proxy\)$"):
        load_recipe("nope.yaml")
