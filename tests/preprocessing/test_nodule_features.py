"""Measured nodule features on synthetic nodules whose size, density and shape are known."""

from __future__ import annotations

import numpy as np
import pytest

from lungai.preprocessing.nodule_features import FEATURE_NAMES, feature_vector, nodule_features

SPACING = (1.0, 0.7, 0.7)


def _ball(shape: tuple[int, int, int], radius_mm: float, spikes: bool = False) -> np.ndarray:
    """A ball of ``radius_mm`` at the centre; with ``spikes``, six thin spicules leave it along y and x."""
    z, y, x = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 for n in shape]
    distance = np.sqrt(sum(((a - c) * s) ** 2 for a, c, s in zip((z, y, x), centre, SPACING)))
    mask = distance <= radius_mm
    if spikes:
        cz, cy, cx = (int(round(c)) for c in centre)
        reach = int(2 * radius_mm / SPACING[1])
        mask[cz, cy - reach:cy + reach + 1, cx] = True
        mask[cz, cy, cx - reach:cx + reach + 1] = True
        mask[cz - 1:cz + 2, cy - reach:cy + reach + 1:reach, cx - reach:cx + reach + 1:reach] = True
    return mask


def _scan(mask: np.ndarray, inside_hu: float) -> np.ndarray:
    return np.where(mask, inside_hu, -850.0).astype(np.float32)


def test_a_solid_ball_measures_its_size_density_and_roundness() -> None:
    mask = _ball((31, 45, 45), 6.0)
    features = nodule_features(_scan(mask, 40.0), mask, SPACING)
    assert list(features) == list(FEATURE_NAMES)
    assert features["long_axis"] == pytest.approx(12.0, abs=1.0)
    assert features["mean_hu"] == pytest.approx(40.0) and features["solid_fraction"] == 1.0
    assert features["calcified_fraction"] == 0.0 and features["sphericity"] > 0.85
    assert features["margin_contrast"] < -800  # lung outside, soft tissue inside


def test_calcium_and_ground_glass_show_in_the_attenuation_features() -> None:
    mask = _ball((31, 45, 45), 6.0)
    calcified = nodule_features(_scan(mask, 600.0), mask, SPACING)
    ground_glass = nodule_features(_scan(mask, -600.0), mask, SPACING)
    assert calcified["calcified_fraction"] == 1.0 and calcified["hu_p95"] == pytest.approx(600.0)
    assert ground_glass["solid_fraction"] == 0.0 and ground_glass["calcified_fraction"] == 0.0


def test_spicules_lower_sphericity_and_raise_the_radial_spread() -> None:
    round_mask, spiked = _ball((31, 61, 61), 6.0), _ball((31, 61, 61), 6.0, spikes=True)
    smooth = nodule_features(_scan(round_mask, 40.0), round_mask, SPACING)
    rough = nodule_features(_scan(spiked, 40.0), spiked, SPACING)
    assert rough["sphericity"] < smooth["sphericity"] - 0.1
    assert rough["radial_cv"] > smooth["radial_cv"] and rough["solidity"] < smooth["solidity"]


def test_the_features_do_not_depend_on_how_much_scan_surrounds_the_nodule() -> None:
    """The same nodule in a whole-scan box and in a tight VOI gives the same numbers."""
    mask = _ball((41, 81, 81), 5.0)
    scan = _scan(mask, 20.0) + np.random.default_rng(0).normal(0, 20, mask.shape).astype(np.float32)
    tight = (slice(12, 29), slice(25, 56), slice(25, 56))
    wide, narrow = nodule_features(scan, mask, SPACING), nodule_features(scan[tight], mask[tight], SPACING)
    np.testing.assert_allclose(feature_vector(wide), feature_vector(narrow), rtol=1e-6)


def test_an_empty_or_misplaced_mask_is_refused() -> None:
    mask = _ball((11, 11, 11), 2.0)
    with pytest.raises(ValueError, match="empty"):
        nodule_features(_scan(mask, 0.0), np.zeros_like(mask), SPACING)
    with pytest.raises(ValueError, match="differs"):
        nodule_features(_scan(mask, 0.0)[1:], mask, SPACING)


def test_a_one_voxel_mask_gets_neutral_shape_values() -> None:
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    features = nodule_features(_scan(mask, 0.0), mask, SPACING)
    assert (features["sphericity"], features["radial_cv"]) == (1.0, 0.0)
    assert np.isfinite(feature_vector(features)).all()
