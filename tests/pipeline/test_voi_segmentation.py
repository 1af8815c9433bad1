"""Segmentation of one VOI: the centred ROI, mirroring, tiling of nodules the ROI cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lungai.evaluation.metrics import dice
from lungai.inference.voi_segmentation import (
    VoiInference,
    predict_rois,
    predict_voi_probability,
    probabilities_by_threshold,
    recorded_inference,
    scaled_spec,
    with_overrides,
)
from lungai.preprocessing.measurements import largest_component
from lungai.preprocessing.roi import RoiSpec

SPEC = RoiSpec((8, 16, 16), (1.0, 1.0, 1.0))
SPACING = (1.0, 1.0, 1.0)


class Brightness(nn.Module):
    """Logits rise with intensity: "nodule" wherever the HU is above about -400 (a 1x1x1 convolution)."""

    def __init__(self, ramp: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(40.0)
            self.conv.bias.fill_(-40.0 * 600 / 1400)
        self.ramp = ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv(x)
        if self.ramp:  # not mirror-symmetric: favours the high-x side of the ROI
            logits = logits + torch.linspace(-20, 20, x.shape[-1])
        return logits


def _sphere(shape: tuple[int, int, int], radius: float, centre: tuple[float, ...] | None = None) -> np.ndarray:
    centre = centre or tuple((n - 1) / 2 for n in shape)
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def _voi(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 40.0, -850.0).astype(np.float32)


def test_a_nodule_larger_than_the_roi_is_recovered_by_tiling() -> None:
    nodule = _sphere((20, 40, 40), 9.5)  # 19 voxels wide: cut by the 8 x 16 x 16 ROI
    hu = _voi(nodule)
    plain = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=False, tile=False))
    tiled = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=False, tile=True))
    assert dice(largest_component(plain >= 0.5), nodule) < 0.8  # the ROI holds only part of it
    assert dice(largest_component(tiled >= 0.5), nodule) > 0.97
    assert tiled.shape == hu.shape and tiled.dtype == np.float32


def test_a_nodule_that_fits_keeps_the_centred_prediction() -> None:
    nodule = _sphere((20, 40, 40), 3.0)  # inside the centred ROI, though the VOI is larger
    hu = _voi(nodule)
    plain = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=False, tile=False))
    tiled = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=False, tile=True))
    np.testing.assert_array_equal(plain, tiled)
    assert dice(plain >= 0.5, nodule) == 1.0


def test_a_voi_smaller_than_the_roi_is_padded_not_tiled() -> None:
    nodule = _sphere((6, 12, 12), 2.5)
    hu = _voi(nodule)
    probability = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=True, tile=True))
    assert probability.shape == hu.shape
    assert dice(probability >= 0.5, nodule) == 1.0


def test_mirroring_averages_the_flips() -> None:
    hu = _voi(_sphere((8, 16, 16), 3.0))
    model = Brightness(ramp=True)
    plain = predict_voi_probability(model, hu, SPACING, SPEC, VoiInference(mirror=False, tile=False))
    mirrored = predict_voi_probability(model, hu, SPACING, SPEC, VoiInference(mirror=True, tile=False))
    assert not np.allclose(plain, plain[..., ::-1], atol=1e-3)  # the ramp makes the plain output lopsided
    np.testing.assert_allclose(mirrored, mirrored[..., ::-1], atol=1e-5)  # the flips cancel it


def test_tiling_stops_at_a_few_rois_around_the_centre() -> None:
    hu = _voi(np.ones((8, 16, 100), bool))  # "nodule" everywhere, over 6 ROI widths along x
    probability = predict_voi_probability(Brightness(), hu, SPACING, SPEC, VoiInference(mirror=False, tile=True))
    covered = np.nonzero(probability[4, 8] >= 0.5)[0]
    assert covered.size == 4 * 16  # the central four ROI widths
    assert covered[0] == (100 - 64) // 2


def test_scales_average_the_predictions_at_each_spacing() -> None:
    hu = _voi(_sphere((12, 24, 24), 4.0))
    model = Brightness(ramp=True)  # position-dependent, so each spacing gives another answer
    one = VoiInference(mirror=False, tile=False)
    at_1 = probabilities_by_threshold(model, hu, SPACING, SPEC, 1.0, one, (0.5,))[0.5]
    at_half = probabilities_by_threshold(model, hu, SPACING, SPEC, 0.5, one, (0.5,))[0.5]
    assert not np.allclose(at_1, at_half, atol=1e-3)
    both = predict_voi_probability(model, hu, SPACING, SPEC, with_overrides(one, scales=(1.0, 0.5)))
    np.testing.assert_allclose(both, (at_1 + at_half) / 2, atol=1e-6)
    np.testing.assert_array_equal(predict_voi_probability(model, hu, SPACING, SPEC, one), at_1)
    assert scaled_spec(SPEC, 0.5).spacing == (0.5, 0.5, 0.5) and scaled_spec(SPEC, 0.5).shape == SPEC.shape
    assert scaled_spec(RoiSpec((1, 8, 8), (None, 0.4, 0.4)), 2.0).spacing == (None, 0.8, 0.8)


def test_each_threshold_gets_the_tiling_decision_it_would_get_alone() -> None:
    # the nodule fills the ROI at a low threshold (so it is tiled) but not at a high one
    grid = np.indices((20, 40, 40)).astype(float)
    distance = np.sqrt(sum((w * (g - (n - 1) / 2)) ** 2 for g, n, w in zip(grid, (20, 40, 40), (3, 1, 1))))
    hu = (100.0 - 60.0 * distance).astype(np.float32)  # bright centre, fading out: no sharp edge
    tile = VoiInference(mirror=False, tile=True)
    by_threshold = probabilities_by_threshold(Brightness(), hu, SPACING, SPEC, 1.0, tile, (0.1, 0.9))
    assert not np.array_equal(by_threshold[0.1], by_threshold[0.9])  # tiled at 0.1, centred at 0.9
    for threshold in (0.1, 0.9):
        alone = predict_voi_probability(Brightness(), hu, SPACING, SPEC, with_overrides(tile, threshold=threshold))
        np.testing.assert_array_equal(by_threshold[threshold], alone)


def test_tiling_covers_the_same_millimetres_at_every_scale() -> None:
    hu = _voi(np.ones((8, 16, 160), bool))  # "nodule" everywhere along x, 160 mm
    for scale in (1.0, 0.5):
        inference = VoiInference(mirror=False, tile=True, scales=(scale,))
        covered = np.nonzero(predict_voi_probability(Brightness(), hu, SPACING, SPEC, inference)[4, 8] >= 0.5)[0]
        assert abs(covered.size - 4 * 16) <= 2  # four ROI widths of the trained spacing, in mm


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, 2.5), (-1.0,)])
def test_scales_outside_the_allowed_range_are_refused(scales: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="scales"):
        VoiInference(scales=scales)


@pytest.mark.parametrize("block", [{"scales": 0.8}, {"scales": "1,0.8"}, {"scales": []}, {"scales": [1.0, True]},
                                   {"threshold": None}, {"threshold": 1.5}, {"threshold": "0.4"},
                                   {"tile_mirror": "false"}, {"tile_mirror": 0}])
def test_a_bad_recorded_inference_block_is_a_clear_error(block: dict) -> None:
    with pytest.raises(ValueError, match="threshold|scales|tile_mirror"):
        recorded_inference(block)


def test_recorded_inference_reads_threshold_and_scales() -> None:
    assert recorded_inference({}) == VoiInference(threshold=0.5, scales=(1.0,))
    assert recorded_inference({}, default_threshold=0.3).threshold == 0.3
    recorded = recorded_inference({"threshold": 0.4, "scales": [1, 0.8], "roi_shape_zyx": [16, 48, 48]})
    assert recorded.threshold == 0.4 and recorded.scales == (1.0, 0.8)
    assert with_overrides(recorded, threshold=None, mirror=False) == VoiInference(0.4, False, True, 8, (1.0, 0.8))
    assert recorded.tile_mirror and not recorded_inference({"tile_mirror": False}).tile_mirror


class Recording(Brightness):
    """Brightness that records the batch size of every call."""

    def __init__(self, ramp: bool = False) -> None:
        super().__init__(ramp)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return super().forward(x)


class Corner(nn.Module):
    """Not mirror-symmetric along any axis: logits grow towards the high z, y and x corner.
    Records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        ramps = [torch.linspace(-2, 2, n).reshape([-1 if a == axis else 1 for a in range(3)])
                 for axis, n in enumerate(x.shape[2:])]
        return self.gain * x + ramps[0] + 2 * ramps[1] + 3 * ramps[2]


def _flipped_average(roi: np.ndarray) -> np.ndarray:
    """The 8-flip average of ``Corner`` on one ROI, one model call per flip."""
    total = np.zeros(roi.shape, np.float32)
    with torch.no_grad():
        for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]:
            flipped = torch.from_numpy(np.flip(roi, axes).copy())[None, None]
            total += np.flip(torch.sigmoid(Corner()(flipped))[0, 0].numpy(), axes)
    return total / 8


def test_the_flips_of_one_roi_share_a_model_call_and_average_as_separate_calls_would() -> None:
    model = Corner()
    roi = np.random.default_rng(0).normal(size=SPEC.shape).astype(np.float32)
    (probability,), _ = predict_rois(model, [roi], SPEC, VoiInference(mirror=True))
    assert model.batches == [8]
    np.testing.assert_allclose(probability, _flipped_average(roi), atol=1e-6)


def test_batches_that_mix_rois_keep_each_rois_flips_apart() -> None:
    rois = list(np.random.default_rng(2).normal(size=(3, *SPEC.shape)).astype(np.float32))
    probabilities, _ = predict_rois(Corner(), rois, SPEC, VoiInference(mirror=True, batch_size=3))  # 24 inputs
    for roi, probability in zip(rois, probabilities):
        np.testing.assert_allclose(probability, _flipped_average(roi), atol=1e-6)


def test_a_single_input_is_run_in_a_batch_of_two_and_answered_once() -> None:
    model = Recording(ramp=True)
    roi = np.random.default_rng(1).normal(size=SPEC.shape).astype(np.float32)
    (probability,), _ = predict_rois(model, [roi], SPEC, VoiInference(mirror=False))
    assert model.batches == [2]
    with torch.no_grad():
        expected = torch.sigmoid(Brightness(ramp=True)(torch.from_numpy(roi)[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(probability, expected, atol=1e-6)


def test_unmirrored_tiles_take_one_model_input_each_and_the_centred_roi_stays_mirrored() -> None:
    hu = _voi(np.ones((8, 16, 64), bool))  # cut by the ROI along x: tiled
    counts = {}
    for tile_mirror in (True, False):
        model = Recording()
        inference = VoiInference(threshold=0.5, mirror=True, tile=True, batch_size=8, tile_mirror=tile_mirror)
        probability = predict_voi_probability(model, hu, SPACING, SPEC, inference)
        assert (probability[4, 8] >= 0.5).all()
        assert model.batches[0] == 8  # the centred ROI, mirrored either way
        counts[tile_mirror] = sum(model.batches[1:])
    assert counts[True] == 8 * counts[False] > 0
