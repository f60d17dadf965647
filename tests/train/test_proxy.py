"""The search's proxy recipe of the trainer: schedule, augmentation, NaN detection, learning."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archdsl.data import DataBundle, TensorSplit, load_default
from archdsl.train import NonFiniteLossError, TrainConfig, evaluate, proxy_recipe, train, train_model
from archdsl.train.data import augment


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.GELU(), nn.Flatten(), nn.Linear(8 * 16, 10))


def _small8():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 10))


def test_proxy_schedule_is_warmup_then_cosine_to_zero():
    data = load_default(image_size=8)
    r = train(_small8(), proxy_recipe(batch_size=64, lr=1e-2), data, epochs=2)    # 22 steps, warm-up 11 / 2
    lrs, steps = r.step_lrs, len(r.step_lrs)
    assert steps == 2 * (1437 // 64) == 44
    warm = 0.5 * 22                                                               # warmup_epochs 0.5
    assert lrs[0] == pytest.approx(1e-4)                                          # peak x warmup_lr_ratio
    assert lrs[5] == pytest.approx(1e-4 + 5 * (1e-2 - 1e-4) / warm)               # linear warm-up
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))                        # steps 0..10 warm up
    assert all(a >= b for a, b in zip(lrs[11:], lrs[12:]))                        # then non-increasing
    assert lrs[30] == pytest.approx(0.5e-2 * (1 + math.cos(math.pi * 30 / steps)))  # timm's cosine over all steps
    assert lrs[-1] < 1e-4


def test_augment_crop_is_a_shift_and_flip_mirrors():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    assert torch.equal(augment(x, padding=0, flip=0.0), x)
    out = augment(x, padding=1, flip=0.0)
    assert out.shape == x.shape
    for b in range(2):          # every output is the input shifted by (dy, dx) in [-1, 1]^2, zeros outside
        ok = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.zeros(4, 4)
                ys, xs = slice(max(0, -dy), 4 - max(0, dy)), slice(max(0, -dx), 4 - max(0, dx))
                ys2, xs2 = slice(max(0, dy), 4 - max(0, -dy)), slice(max(0, dx), 4 - max(0, -dx))
                ref[ys, xs] = x[b, 0][ys2, xs2]
                ok |= torch.equal(out[b, 0], ref)
        assert ok
    flips = augment(x.repeat(32, 1, 1, 1), padding=0, flip=0.5)
    same = [torch.equal(f, x[i % 2]) for i, f in enumerate(flips)]
    mirrored = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    assert all(a or b for a, b in zip(same, mirrored)) and any(same) and any(mirrored)


def test_training_learns_the_digits_and_is_deterministic():
    data = load_default(image_size=16)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=5e-3)
    torch.manual_seed(0)
    m1 = _tiny()
    r1 = train_model(m1, data, cfg)
    torch.manual_seed(0)
    r2 = train_model(_tiny(), data, cfg)
    assert r1.accuracy > 0.6                                             # chance is 0.1
    assert r1.accuracy == r2.accuracy and r1.step_losses == r2.step_losses
    assert [h["epoch"] for h in r1.history] == [1, 2] and r1.history[1]["train_loss"] < r1.history[0]["train_loss"]
    assert evaluate(m1, data.val.batches(256))[0] == r1.accuracy


def test_nan_loss_raises_a_clear_error():
    x = torch.randn(32, 3, 8, 8)
    y = torch.arange(32) % 10
    data = DataBundle("t", TensorSplit(x, y), TensorSplit(x, y), num_classes=10, image_size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
    model.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(NonFiniteLossError) as e:
        train_model(model, data, TrainConfig(epochs=1, batch_size=16, lr=1e-3))
    assert str(e.value) == ("non-finite training loss (nan) at epoch 1 step 1; lower the learning rate "
                            "(lr=0.001)")


def test_on_epoch_hook_and_step_cap():
    data = load_default(image_size=8)
    seen = []
    r = train_model(_small8(), data, TrainConfig(epochs=3, batch_size=32, max_steps_per_epoch=2),
                    on_epoch=lambda e, a: seen.append((e, a)))
    assert [e for e, _ in seen] == [1, 2, 3] and seen[-1][1] == r.accuracy and len(r.step_losses) == 6
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        train(_small8(), proxy_recipe(), data, epochs=0)
