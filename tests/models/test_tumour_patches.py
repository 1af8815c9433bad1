"""Overlapping-patch prediction and the tumour paper's threshold + disk dilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.morphology import disk as skimage_disk
from torch import Tensor, nn

from lungai.inference.patches import (
    SlidingWindowConfig,
    TumourPredictionConfig,
    disk,
    predict_tumour_mask,
    sliding_window_predict,
    threshold_and_dilate,
    window_starts,
)
from lungai.models.r3d_denseunet import R3DDenseUNet


@pytest.mark.parametrize(
    ("size", "patch", "overlap", "expected"),
    [(10, 4, 0.5, [0, 2, 4, 6]), (11, 4, 0.5, [0, 2, 4, 6, 7]), (4, 4, 0.5, [0]), (9, 4, 0.0, [0, 4, 5])],
)
def test_window_starts_cover_the_axis_and_end_at_the_edge(
    size: int, patch: int, overlap: float, expected: list[int]
) -> None:
    assert window_starts(size, patch, overlap) == expected


def test_window_starts_refuse_bad_overlap() -> None:
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 1.0)


def test_identity_predictor_returns_the_volume_even_when_smaller_than_a_patch() -> None:
    volume = torch.randn(2, 1, 5, 19, 13)
    config = SlidingWindowConfig(patch_size=(8, 8, 8), overlap=0.5, batch_size=3)
    torch.testing.assert_close(sliding_window_predict(volume, lambda x: x, config), volume)


def test_overlaps_are_averaged() -> None:
    calls: list[int] = []

    def constant_per_call(patch: Tensor) -> Tensor:
        calls.append(1)
        return torch.full_like(patch, 10.0 * (len(calls) - 1))

    volume = torch.zeros(1, 1, 1, 1, 6)
    result = sliding_window_predict(volume, constant_per_call, SlidingWindowConfig((1, 1, 4), overlap=0.5))
    assert result.flatten().tolist() == [0, 0, 5, 5, 10, 10]


def test_batching_does_not_change_the_result_and_channels_can_change() -> None:
    volume = torch.randn(2, 1, 6, 10, 9)

    def two_channels(patch: Tensor) -> Tensor:
        return torch.cat([patch.mean(dim=(2, 3, 4), keepdim=True).expand_as(patch), 2 * patch], dim=1)

    one = sliding_window_predict(volume, two_channels, SlidingWindowConfig((4, 4, 4), 0.5, batch_size=1))
    many = sliding_window_predict(volume, two_channels, SlidingWindowConfig((4, 4, 4), 0.5, batch_size=5))
    assert one.shape == (2, 2, 6, 10, 9)
    torch.testing.assert_close(one, many)
    torch.testing.assert_close(one[:, 1:], 2 * volume)


def test_seven_by_seven_disk_matches_scikit_image() -> None:
    assert disk(7).shape == (7, 7) and disk(7).sum() == 29
    np.testing.assert_array_equal(disk(7), skimage_disk(3).astype(bool))
    with pytest.raises(ValueError):
        disk(6)


def test_threshold_then_in_plane_dilation() -> None:
    probability = np.zeros((3, 11, 11))
    probability[1, 5, 5] = 0.7
    probability[2, 5, 5] = 0.69
    mask = threshold_and_dilate(probability, threshold=0.7, disk_diameter=7)
    assert not mask[0].any() and not mask[2].any()
    np.testing.assert_array_equal(mask[1, 2:9, 2:9], disk(7))
    assert mask.sum() == 29


class _Scaled(nn.Module):
    """A stand-in patch model whose logit is its input."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dummy


def test_predict_tumour_mask_thresholds_averaged_probabilities_and_dilates() -> None:
    volume = torch.full((5, 20, 30), -5.0)
    volume[2, 10, 15] = 5.0
    volume[4, 3, 3] = 0.8  # sigmoid(0.8) = 0.69 < 0.7
    config = TumourPredictionConfig(patch_size=(2, 8, 8), overlap=0.5)
    mask = predict_tumour_mask(_Scaled(), volume, config)
    expected = np.zeros((5, 20, 30), dtype=bool)
    expected[2, 7:14, 12:19] = disk(7)
    np.testing.assert_array_equal(mask, expected)


def test_predict_tumour_mask_runs_the_real_model_on_a_small_scan() -> None:
    mask = predict_tumour_mask(R3DDenseUNet(), torch.randn(3, 20, 18), TumourPredictionConfig(patch_size=(2, 16, 16)))
    assert mask.shape == (3, 20, 18) and mask.dtype == bool
