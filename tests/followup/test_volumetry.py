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
                 shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 others: tuple[tuple[tuple[float, float, float], float], ...] = ()) -> tuple[sitk.Image, np.ndarray]:
    """A sphere of ``radius_mm`` on a grid of ``spacing_xyz``, each voxel the sphere's share of it (4^3
    sub-samples) as a thick-slice scanner would average, plus noise; and its mask thresholded at -400 HU.
    ``others``: (centre, radius) of more balls of the same density (other structures; the sphere covers
    them where they overlap), left out of the mask."""
    size = [int(round(60.0 / s)) for s in spacing_xyz]
    sub = 4
    axes = [(np.arange(n * sub) + 0.5) / sub * s for n, s in zip(size[::-1], spacing_xyz[::-1])]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")

    def share(inside: np.ndarray) -> np.ndarray:
        return inside.reshape(size[2], sub, size[1], sub, size[0], sub).mean(axis=(1, 3, 5))

    centre = CENTRE_MM + np.asarray(shift_mm)
    nodule = share(((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (zz - centre[2]) ** 2) <= radius_mm ** 2)
    fine = np.zeros(xx.shape, dtype=bool)
    steps = [s / sub for s in spacing_xyz[::-1]]
    for other_centre, radius in others:  # each ball within its own box of sub-samples
        box = tuple(slice(max(0, int((c - radius) / d)), int((c + radius) / d) + 2)
                    for c, d in zip(other_centre[::-1], steps))
        fine[box] |= ((xx[box] - other_centre[0]) ** 2 + (yy[box] - other_centre[1]) ** 2
                      + (zz[box] - other_centre[2]) ** 2) <= radius ** 2
    rest = share(fine)
    noise = np.random.default_rng(seed).normal(0.0, noise_hu, nodule.shape)
    hu = BACKGROUND_HU + np.maximum(nodule, rest) * (NODULE_HU - BACKGROUND_HU) + noise
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(spacing_xyz)
    labels = np.where(BACKGROUND_HU + nodule * (NODULE_HU - BACKGROUND_HU) + noise > -400.0, 11, 1).astype(np.uint8)
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


def _with_blob(image: sitk.Image, centre_mm: tuple[float, float, float], radius_mm: float,
               labels: np.ndarray | None = None, value: int = 11) -> tuple[sitk.Image, np.ndarray | None]:
    """``image`` with a solid ball (another structure, at ``NODULE_HU``) added; its voxels get ``value``
    in a copy of ``labels`` when given (a segmentation that merged with it)."""
    hu = sitk.GetArrayFromImage(image).astype(np.float64)
    spacing = image.GetSpacing()[::-1]
    zz, yy, xx = (np.indices(hu.shape) + 0.5) * np.asarray(spacing)[:, None, None, None]
    inside = (xx - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 + (zz - centre_mm[2]) ** 2 <= radius_mm ** 2
    hu[inside] = NODULE_HU
    out = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    out.CopyInformation(image)
    if labels is None:
        return out, None
    merged = labels.copy()
    merged[inside] = value
    return out, merged


def test_structures_around_a_growing_nodule_do_not_pull_its_ratio_towards_one() -> None:
    """Lung with small structures (200 balls of 1 mm radius, about a tenth of a 20 mm cube, the same on
    both scans) and a 3 mm nodule that grows threefold over them. Each scan is measured in its own
    region (its mask dilated by 2 mm, cut to a ball of its equivalent radius plus 2 mm: 2.8-fold here);
    one region for both, the union of the masks dilated, counts on the prior the structures the grown
    nodule covers and measured 2.0-fold."""
    radius, factor = 3.0, 3.0
    rng = np.random.default_rng(7)
    others = tuple((tuple(CENTRE_MM + rng.uniform(-10.0, 10.0, 3)), 1.0) for _ in range(200))
    prior_image, prior_labels = _sphere_scan(radius, (0.7, 0.7, 0.7), 5.0, 0, others=others)
    current_image, current_labels = _sphere_scan(radius * factor ** (1 / 3), (0.7, 0.7, 1.25), 5.0, 1,
                                                 others=others)
    paired = paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11),
                            sitk.Transform(3, sitk.sitkIdentity))
    assert paired is not None
    assert paired.ratio == pytest.approx(factor, rel=0.12)


def test_detected_masks_are_measured_where_they_are_whatever_the_transform() -> None:
    prior_image, prior_labels = _sphere_scan(4.0, (0.7, 0.7, 1.0), 5.0, 0)
    current_image, current_labels = _sphere_scan(4.0 * 1.4 ** (1 / 3), (0.7, 0.7, 1.25), 5.0, 1, (6.0, 0.0, 0.0))
    results = [paired_volumes(Side(prior_image, prior_labels, 11), Side(current_image, current_labels, 11), t)
               for t in (sitk.TranslationTransform(3, (-6.0, 0.0, 0.0)), sitk.Transform(3, sitk.sitkIdentity))]
    assert results[0] is not None and results[0].ratio == pytest.approx(1.4, rel=0.06)
    assert results[0] == results[1]


def test_a_mapped_segmentation_merged_with_a_neighbour_is_cut_to_the_other_scans_nodule() -> None:
    """The prior mask came from a segmentation at the mapped position and took in a 3 mm neighbour
    1.5 mm from the 4 mm nodule; cut to the current nodule mapped back (6 mm away, the transform
    takes it there) and dilated by 2 mm, only the nodule counts. Unmarked as mapped, or with a wrong
    transform, the ratio is far off."""
    radius, factor = 4.0, 1.5
    prior_image, prior_labels = _sphere_scan(radius, (0.7, 0.7, 0.7), 5.0, 0)
    prior_image, merged = _with_blob(prior_image, tuple(CENTRE_MM + np.array([0.0, 8.5, 0.0])), 3.0, prior_labels)
    assert merged is not None
    current_image, current_labels = _sphere_scan(radius * factor ** (1 / 3), (0.7, 0.7, 1.25), 5.0, 1,
                                                 (6.0, 0.0, 0.0))
    shift = sitk.TranslationTransform(3, (-6.0, 0.0, 0.0))
    current = Side(current_image, current_labels, 11)
    cut = paired_volumes(Side(prior_image, merged, 11, mapped=True), current, shift)
    assert cut is not None
    assert cut.prior_mm3 == pytest.approx(_volume(radius), rel=0.08)
    assert cut.ratio == pytest.approx(factor, rel=0.08)
    whole = paired_volumes(Side(prior_image, merged, 11), current, shift)
    assert whole is not None and whole.ratio < factor - 0.25
    wrong = paired_volumes(Side(prior_image, merged, 11, mapped=True), current, sitk.Transform(3, sitk.sitkIdentity))
    assert wrong is None or abs(wrong.ratio - factor) > 0.25


def test_no_paired_volume_without_a_mask_or_contrast() -> None:
    image, labels = _sphere_scan(3.0, (1.0, 1.0, 1.0), 5.0, 0)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    assert paired_volumes(Side(image, labels, 12), Side(image, labels, 11), identity) is None
    flat = sitk.GetImageFromArray(np.full(labels.shape, -850, np.int16))
    flat.CopyInformation(image)
    assert paired_volumes(Side(flat, labels, 11), Side(flat, labels, 11), identity) is None
    # the nodule's level comes from the thinner-slice scan, but nothing on the other rises above its
    # background: a zero volume, so no paired volumes (a doubling time needs two positive volumes)
    thick = sitk.GetImageFromArray(np.full(labels.shape, -850, np.int16))
    thick.SetSpacing((1.0, 1.0, 2.5))
    assert paired_volumes(Side(image, labels, 11), Side(thick, labels, 11), identity) is None


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
