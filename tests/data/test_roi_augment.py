"""Per-model ROIs in physical units and the seeded on-the-fly augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from lungai.data.augment import AugmentConfig, augment_roi
from lungai.evaluation.metrics import dice
from lungai.preprocessing.roi import (
    ROI_SPECS,
    RoiSpec,
    centre_pad_crop,
    extract_roi,
    normalize_hu,
    resample_to_spec,
    roi_to_native,
    support_mask,
)


def _ball_voi(spacing: tuple[float, float, float], radius_mm: float = 5.0, extent_mm: float = 30.0):
    shape = tuple(int(round(extent_mm / s)) for s in spacing)
    grid = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 for n in shape]
    dist = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)))
    mask = (dist <= radius_mm).astype(np.uint8)
    image = np.where(mask, 40.0, -850.0).astype(np.float32)
    return image, mask


@pytest.mark.parametrize("model", sorted(ROI_SPECS))
def test_roi_has_the_model_input_shape(model: str) -> None:
    image, mask = _ball_voi((2.5, 0.7, 0.7))
    roi, target = extract_roi(image, mask, (2.5, 0.7, 0.7), ROI_SPECS[model])
    assert roi.shape == ROI_SPECS[model].shape == target.shape
    assert 0.0 <= roi.min() and roi.max() <= 1.0


def test_size_is_preserved_across_native_spacings() -> None:
    spec = ROI_SPECS["resunet3d"]
    volumes = []
    for spacing in ((2.5, 0.6, 0.6), (1.25, 0.9, 0.9)):
        image, mask = _ball_voi(spacing)
        _, target = extract_roi(image, mask, spacing, spec)
        volumes.append(target.sum() * np.prod(spec.spacing))
    assert volumes[0] == pytest.approx(volumes[1], rel=0.15)
    assert volumes[0] == pytest.approx(4 / 3 * np.pi * 5.0**3, rel=0.25)


def test_padding_repeats_edge_values() -> None:
    array = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    padded = centre_pad_crop(array, (1, 4, 6), "edge")
    assert padded[0, 0, 0] == array[0, 0, 0] and padded[0, -1, -1] == array[0, -1, -1]
    assert np.array_equal(centre_pad_crop(padded, (1, 2, 4)), array)


def test_prediction_maps_back_to_the_native_grid() -> None:
    spacing = (2.5, 0.7, 0.7)
    image, mask = _ball_voi(spacing)
    spec = ROI_SPECS["resunet3d"]
    _, target = extract_roi(image, mask, spacing, spec)
    back = roi_to_native(target, mask.shape, spacing, spec) >= 0.5
    assert dice(back, mask) > 0.9


def test_no_augmentation_equals_the_plain_roi() -> None:
    spacing = (1.25, 0.7, 0.7)
    image, mask = _ball_voi(spacing)
    spec = RoiSpec((10, 64, 64), (2.5, 0.8, 0.8))
    resampled, soft = resample_to_spec(image, mask, spacing, spec)
    plain, target = extract_roi(image, mask, spacing, spec)
    out, out_mask = augment_roi(normalize_hu(resampled), soft, spec.shape, np.random.default_rng(0),
                                AugmentConfig.off())
    np.testing.assert_allclose(out, plain, atol=1e-6)
    assert np.array_equal(out_mask, target)


def test_augmentation_is_seeded_and_moves_image_and_mask_together() -> None:
    spacing = (2.5, 0.7, 0.7)
    image, mask = _ball_voi(spacing, radius_mm=6.0)
    spec = ROI_SPECS["resunet3d"]
    resampled, soft = resample_to_spec(image, mask, spacing, spec)
    norm = normalize_hu(resampled)
    a = augment_roi(norm, soft, spec.shape, np.random.default_rng(3), AugmentConfig())
    b = augment_roi(norm, soft, spec.shape, np.random.default_rng(3), AugmentConfig())
    c = augment_roi(norm, soft, spec.shape, np.random.default_rng(4), AugmentConfig())
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    bright = a[0] > normalize_hu(np.array(-400.0))
    assert dice(bright, a[1]) > 0.8


def test_support_marks_voi_content_and_moves_with_the_mask() -> None:
    spacing = (2.5, 0.7, 0.7)
    image, mask = _ball_voi(spacing, radius_mm=4.0, extent_mm=12.0)  # smaller than the ROI: padded
    spec = ROI_SPECS["resunet3d"]
    resampled, soft = resample_to_spec(image, mask, spacing, spec)
    stacked = np.stack([soft, support_mask(soft.shape)])
    _, single = augment_roi(normalize_hu(resampled), soft, spec.shape, np.random.default_rng(5), AugmentConfig())
    _, both = augment_roi(normalize_hu(resampled), stacked, spec.shape, np.random.default_rng(5), AugmentConfig())
    assert both.shape == (2, *spec.shape)
    assert np.array_equal(both[0], single)
    support = both[1]
    assert 0 < support.sum() < support.size  # padding exists and is marked 0
    assert np.all(support[both[0] > 0] == 1)  # the nodule is always inside the VOI
    assert support.sum() * np.prod(spec.spacing) == pytest.approx(12.0**3, rel=0.35)


def test_a_larger_shift_fraction_moves_the_nodule_further_off_centre() -> None:
    spacing = (1.25, 0.7, 0.7)
    image, mask = _ball_voi(spacing, radius_mm=4.0, extent_mm=60.0)
    spec = ROI_SPECS["resunet3d"]
    resampled, soft = resample_to_spec(image, mask, spacing, spec)
    norm, centre = normalize_hu(resampled), (np.asarray(spec.shape) - 1) / 2

    def largest_offset(shift_fraction: float) -> float:
        config = AugmentConfig(rotation_deg=0.0, scale=0.0, shift_fraction=shift_fraction, flip_probability=0.0)
        rng = np.random.default_rng(0)
        offsets = [np.abs(np.argwhere(augment_roi(norm, soft, spec.shape, rng, config)[1] > 0.5).mean(axis=0)
                          - centre).max() for _ in range(20)]
        return float(max(offsets))

    assert largest_offset(0.05) <= 0.05 * 48 + 1 < 0.2 * 48 < largest_offset(0.3) <= 0.3 * 48 + 1
