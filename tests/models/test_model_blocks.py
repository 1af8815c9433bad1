"""Shared blocks: per-slice convolutions, padding to multiples, spatial crops."""

from __future__ import annotations

import torch

from lungai.models.blocks import SliceConvUnit, pad_to_multiple, spatial_crop


def test_slice_unit_keeps_slices_apart() -> None:
    unit = SliceConvUnit(1, 4).eval()
    x = torch.randn(1, 1, 3, 8, 8)
    changed = x.clone()
    changed[:, :, 0] += 1
    with torch.no_grad():
        y, y_changed = unit(x), unit(changed)
    assert y.shape == (1, 4, 3, 4, 4)
    torch.testing.assert_close(y[:, :, 1:], y_changed[:, :, 1:])


def test_pad_to_multiple_pads_only_the_end_of_axes_that_need_it() -> None:
    x = torch.ones(1, 1, 3, 8, 5)
    padded = pad_to_multiple(x, (1, 8, 8))
    assert padded.shape == (1, 1, 3, 8, 8)
    assert padded[..., :5].eq(1).all() and padded[..., 5:].eq(0).all()
    assert pad_to_multiple(x, (1, 1, 1)) is x


def test_spatial_crop_is_a_writable_view() -> None:
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5)
    box = spatial_crop(x, (2, 3), start=(1, 2))
    torch.testing.assert_close(box, x[:, 1:3, 2:5])
    box.zero_()
    assert x[:, 1:3, 2:5].eq(0).all()
    assert spatial_crop(x, (4, 1)).shape == (2, 4, 1)
