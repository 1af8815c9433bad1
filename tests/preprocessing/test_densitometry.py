"""Tests of emphysema densitometry (LAA percentages, Perc15, volume, mean density)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from lungai import labels
from lungai.data.phantom import LUNG_HU, make_phantom
from lungai.preprocessing.densitometry import DensitometryConfig, measure_densitometry

RIGHT, LEFT = labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value


def _images(hu: np.ndarray, lungs: np.ndarray,
            spacing: tuple[float, float, float] = (1.0, 1.0, 2.0)) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing(spacing)
    label_image = sitk.GetImageFromArray(lungs.astype(np.uint8))
    label_image.CopyInformation(image)
    return image, label_image


def test_tiny_array_known_answer() -> None:
    right_values = [-1000, -960, -950, -940, -900, -860, -850, -800, -700, -500]
    left_values = [-1000, -900, -800, -700]
    hu = np.zeros((1, 3, 10), dtype=np.int16)
    lungs = np.zeros_like(hu, dtype=np.uint8)
    hu[0, 0, :] = right_values
    lungs[0, 0, :] = RIGHT
    hu[0, 1, :4] = left_values
    lungs[0, 1, :4] = LEFT
    hu[0, 2, :] = -1000  # outside the lungs: ignored
    result = measure_densitometry(*_images(hu, lungs))

    right = result.right
    assert right is not None
    assert right.laa_percent[-950] == pytest.approx(20.0)  # -1000, -960; -950 is not below
    assert right.laa_percent[-910] == pytest.approx(40.0)  # ... -950, -940
    assert right.laa_percent[-856] == pytest.approx(60.0)  # ... -900, -860
    # 15th percentile of 10 sorted values: position 0.15 * 9 = 1.35 -> -960 + 0.35 * 10
    assert right.percentile_hu == pytest.approx(-956.5)
    assert right.mean_hu == pytest.approx(-846.0)
    assert right.volume_ml == pytest.approx(10 * 2.0 / 1000.0)

    assert result.left is not None
    assert result.left.laa_percent[-950] == pytest.approx(25.0)
    assert result.left.mean_hu == pytest.approx(-850.0)
    total = result.total
    assert total.laa_percent[-950] == pytest.approx(100.0 * 3 / 14)
    assert total.volume_ml == pytest.approx(14 * 2.0 / 1000.0)
    assert total.mean_hu == pytest.approx((sum(right_values) + sum(left_values)) / 14)


def test_to_dict_is_json_ready() -> None:
    hu = np.array([[[-1000, -900, -800, -700]]])
    lungs = np.array([[[RIGHT, RIGHT, LEFT, LEFT]]])
    as_dict = measure_densitometry(*_images(hu, lungs)).to_dict()
    assert set(as_dict) == {"right", "left", "total"}
    assert set(as_dict["total"]) == {"laa_950_percent", "laa_910_percent", "laa_856_percent",
                                     "perc15_hu", "volume_ml", "mean_hu"}
    assert as_dict["right"]["laa_950_percent"] == pytest.approx(50.0)
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_missing_lung_is_none_and_config_changes_keys() -> None:
    hu = np.array([[[-1000, -900, -800, -700]]])
    lungs = np.array([[[RIGHT, RIGHT, RIGHT, 0]]])
    config = DensitometryConfig(laa_thresholds_hu=(-950,), percentile=10.0)
    result = measure_densitometry(*_images(hu, lungs), config)
    assert result.left is None
    assert result.to_dict()["left"] is None
    assert set(result.to_dict()["right"]) == {"laa_950_percent", "perc10_hu", "volume_ml",
                                              "mean_hu"}


def test_rejects_mismatched_grid_and_empty_mask() -> None:
    hu = np.full((2, 4, 4), -900)
    lungs = np.zeros((2, 4, 4))
    image, label_image = _images(hu, lungs)
    with pytest.raises(ValueError, match="no lung voxels"):
        measure_densitometry(image, label_image)
    shifted = sitk.Image(label_image)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="same grid"):
        measure_densitometry(image, shifted)


def test_phantom_matches_hand_computation() -> None:
    phantom = make_phantom()
    result = measure_densitometry(phantom.image, phantom.lung_labels)
    hu = sitk.GetArrayFromImage(phantom.image).astype(float)
    lungs = sitk.GetArrayFromImage(phantom.lung_labels)
    voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
    for value, measured in ((RIGHT, result.right), (LEFT, result.left), (None, result.total)):
        values = hu[lungs > 0] if value is None else hu[lungs == value]
        assert measured is not None
        assert measured.volume_ml == pytest.approx(values.size * voxel_ml)
        assert measured.mean_hu == pytest.approx(values.mean())
        assert measured.laa_percent[-950] == pytest.approx(100.0 * np.mean(values < -950))
        assert measured.laa_percent[-856] == pytest.approx(100.0 * np.mean(values < -856))
        assert measured.percentile_hu == pytest.approx(np.percentile(values, 15))
    # Parenchyma is -850 HU with 20 HU noise: Perc15 near -850 - 1.04 * 20, almost no LAA-950.
    assert result.total.percentile_hu == pytest.approx(LUNG_HU - 1.04 * 20.0, abs=6.0)
    assert result.total.laa_percent[-950] < 0.5
