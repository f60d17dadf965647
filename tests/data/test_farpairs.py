"""The generated farpairs task: deterministic, balanced, labels = same band colour; and the local
mixer's receptive field, which the task is built around."""
from __future__ import annotations

import numpy as np
import torch

from archdsl.data import load_data
from archdsl.data.farpairs import BAND, PALETTE, render_farpairs
from archdsl.layers.mixers.dwconv import DWConvMixer


def _band_colour(img: np.ndarray, vertical: bool, far: bool) -> int:
    """The palette index closest to the mean of the band's bright pixels."""
    band = img[:, :, -BAND:] if far else img[:, :, :BAND]
    if vertical:
        band = img[:, -BAND:, :] if far else img[:, :BAND, :]
    px = band.reshape(3, -1)
    dots = px[:, px.max(0) > 0.5]
    return int(np.argmin(((PALETTE - dots.mean(1)) ** 2).sum(1)))


def test_render_is_deterministic_balanced_and_labelled_by_colour():
    x, y = render_farpairs(200, seed=3)
    x2, y2 = render_farpairs(200, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32 and int(y.sum()) == 100
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    for img, label in zip(x.numpy(), y.tolist()):
        # the bands are left/right when the middle columns' outer rows hold no dots, else top/bottom
        vertical = img[:, :BAND, BAND:-BAND].max() > 0.5
        colours = {_band_colour(img, vertical, far) for far in (False, True)}
        assert (len(colours) == 1) == bool(label)
        mid = img[:, BAND:-BAND, :] if vertical else img[:, :, BAND:-BAND]
        assert mid.max() < 0.5                                    # nothing between the bands


def test_bundle():
    b = load_data("farpairs")
    assert (len(b.train), len(b.val), b.num_classes, b.image_size) == (2000, 1000, 2, 32)
    assert abs(float(b.train.x.mean())) < 1e-4 and b.flip


def test_dwconv_mixer_sees_only_its_window():
    m = DWConvMixer(8, 2, kernel=3)
    x = torch.zeros(1, 64, 8, requires_grad=True)
    m(x, (8, 8))[0, 0].sum().backward()                         # output token (0, 0)
    seen = (x.grad[0].abs().sum(-1) > 0).reshape(8, 8)
    assert seen.nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
