"""Paired volumetry on spheres whose volumes are known, scanned at two slice thicknesses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.followup.growth import PAIRED, SEGMENTED, Size, growth
from lungai.followup.volumetry import PairedVolumes, Side, consistent_diameters, paired_volumes

BACKGROUND_HU, NODULE_HU = -850.0, 20.0
CENTRE_MM = np.array([30.0, 32.0, 40.0])


def _sphere_scan(radius_mm: float, spacing_xyz: tuple[float, float, float], noise_hu: float, seed: int,
                 shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[sitk.Image, np.ndarray]:
    """A sphere of ``radius_mm`` on a grid of ``spacing_xyz``, each voxel the sphere's share of it (4^3
    sub-samples) as a thick-slice scanner would average, plus noise; and its mask thresholded at -400 HU."""
    size = [int(round(60.0 / s)) for s in spacing_xyz]
    sub = 4
    axes = [(np.arange(n * sub) + 0.5) / sub * s for n, s in zip(size[::-1], spacing_xyz[::-1])]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    centre = CENTRE_MM + np.asarray(shift_mm)
    inside = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2) <= radius_mm ** 2
    share = inside.reshape(size[2], sub, size[1], sub, size[0], sub).mean(axis=(1, 3, 5))
    hu = BACKGROUND_HU + share * (NODULE_HU - BACKGROUND_HU)
    hu += np.random.default_rng(seed).normal(0.0, noise_hu, hu.shape)
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(spacing_xyz)
    labels = np.where(hu > -400.0, 11, 1).astype(np.uint8)
    return image, labels


def _volume(radius_mm: float) -> float:
    return 4.0 / 3.0 * math.pi * radius_mm ** 3


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.5, 2.2])
def test_paired_ratio_is_the_true_ratio_across_slice_thickness(factor: float) -> None:
    radius = 3.5
    prior_image, prior_labels = _sphere_scan(radius, (0.7, 0.7, 1.0), 5.0, 0)
    current_radius = radius * factor ** (1.0 / 3.0)
    current_image, current_labels = _sphere_scan(current_radius, (0.7, 0.7, 2.5), 15.0, 1)
    paired = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11),
                            sitk.Transform(3, sitk.sitkIdentity))
    assert paired is not None
    assert paired.ratio == pytest.approx(factor, rel=0.06)
    assert paired.prior_mm3 == pytest.approx(_volume(radius), rel=0.08)
    assert paired.current_mm3 == pytest.approx(_volume(current_radius), rel=0.08)


def test_thresholded_masks_would_miss_the_ratio_that_paired_volumetry_finds() -> None:
    """The reason for the method: a 2.5 mm slice moves a thresholded small nodule's volume."""
    prior_image, prior_labels = _sphere_scan(2.5, (0.7, 0.7, 0.7), 5.0, 0)
    current_image, current_labels = _sphere_scan(2.5 * 1.3 ** (1 / 3), (0.7, 0.7, 2.5), 5.0, 1)
    mask_ratio = (np.count_nonzero(current_labels == 11) * 0.7 * 0.7 * 2.5
                  / (np.count_nonzero(prior_labels == 11) * 0.7 ** 3))
    paired = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11),
                            sitk.Transform(3, sitk.sitkIdentity))
    assert paired is not None
    assert abs(paired.ratio - 1.3) < abs(mask_ratio - 1.3)
    assert paired.ratio == pytest.approx(1.3, rel=0.06)


def test_registration_moves_the_region_and_a_small_error_is_covered() -> None:
    """The current nodule lies 6 mm off in x; the transform (current -> prior) takes it back. The
    region holds both masks, so the same nodule unregistered by 6 mm still measures right; a
    transform 20 mm wrong does not."""
    prior_image, prior_labels = _sphere_scan(4.0, (0.7, 0.7, 1.0), 5.0, 0)
    current_image, current_labels = _sphere_scan(4.0 * 1.4 ** (1 / 3), (0.7, 0.7, 1.25), 5.0, 1, (6.0, 0.0, 0.0))
    shift = sitk.TranslationTransform(3, (-6.0, 0.0, 0.0))
    paired = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11), shift)
    assert paired is not None and paired.ratio == pytest.approx(1.4, rel=0.06)
    unmoved = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11),
                             sitk.Transform(3, sitk.sitkIdentity))
    assert unmoved is not None and unmoved.ratio == pytest.approx(1.4, rel=0.06)
    wrong = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11),
                           sitk.TranslationTransform(3, (20.0, 0.0, 0.0)))
    assert wrong is None or abs(wrong.ratio - 1.4) > 0.2


def test_no_paired_volume_without_a_mask_or_contrast() -> None:
    image, labels = _sphere_scan(3.0, (1.0, 1.0, 1.0), 5.0, 0)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    assert paired_volumes(Side(image, labels, 12), Side(image, labels, 11), identity) is None
    flat = sitk.GetImageFromArray(np.full(labels.shape, -850, np.int16))
    flat.CopyInformation(image)
    assert paired_volumes(Side(flat, labels, 11), Side(flat, labels, 11), identity) is None


def test_consistent_diameters_follow_the_volume_ratio() -> None:
    prior, current = consistent_diameters(10.0, 12.0, 8.0)  # eightfold volume: diameter doubles
    assert current == pytest.approx(2.0 * prior)
    assert prior == pytest.approx((10.0 + 6.0) / 2.0)


def test_growth_uses_paired_volumes_when_given() -> None:
    prior, current = Size(8.0, 6.0, 150.0), Size(9.0, 7.0, 170.0)
    paired = PairedVolumes(140.0, 280.0, (-850.0, -848.0), 10.0)
    result = growth(prior, current, 100, paired)
    assert result.volume_method == PAIRED
    assert (result.prior_volume_mm3, result.current_volume_mm3) == (140.0, 280.0)
    assert result.vdt_days == pytest.approx(100.0)
    assert result.volume_change_pct == pytest.approx(100.0)
    d1, d2 = consistent_diameters(7.0, 8.0, 2.0)
    assert result.mean_diameter_change_mm == pytest.approx(round(d2 - d1, 1))
    assert result.lung_rads_growth == (d2 - d1 > 1.5)
    plain = growth(prior, current, 100)
    assert plain.volume_method == SEGMENTED and plain.mean_diameter_change_mm == pytest.approx(1.0)
