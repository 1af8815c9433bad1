"""Lesion measurements on synthetic spheres and ellipsoids of known size, on real CT spacings."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungai import labels
from lungai.preprocessing.measurements import axial_diameters, classify_type, measure_lesion

#: LIDC-IDRI-0001's spacing (x, y, z) and a thin-slice one.
SPACINGS = [(0.703, 0.703, 2.5), (0.68, 0.68, 1.25)]
LUNG_HU, SOLID_HU, GGO_HU = -850, 20, -600


def grid(spacing: tuple[float, float, float], size_mm: tuple[float, float, float] = (70, 70, 70)):
    """(z, y, x) mm coordinates of voxel centres and the matching empty image."""
    shape = tuple(int(round(s / d)) for s, d in zip(size_mm[::-1], spacing[::-1]))
    image = sitk.Image(shape[::-1], sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin((-60.0, -50.0, -200.0))
    z, y, x = np.meshgrid(*(np.arange(n) * d for n, d in zip(shape, spacing[::-1])), indexing="ij")
    return image, z, y, x


def ellipsoid(z, y, x, centre, semi_axes_xyz, angle_deg: float = 0.0) -> np.ndarray:
    """Voxels inside an ellipsoid rotated by ``angle_deg`` in the axial plane."""
    cz, cy, cx = centre
    t = np.deg2rad(angle_deg)
    dx, dy = x - cx, y - cy
    u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
    a, b, c = semi_axes_xyz
    return (u / a) ** 2 + (v / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0


def scene(spacing, semi_axes_xyz, angle_deg=0.0, hu=SOLID_HU):
    image, z, y, x = grid(spacing)
    # centre on a slice centre so the largest cross-section is sampled
    centre = (round(35.0 / spacing[2]) * spacing[2], 35.0, 35.0)
    mask = ellipsoid(z, y, x, centre, semi_axes_xyz, angle_deg)
    ct = np.full(mask.shape, LUNG_HU, np.int16)
    ct[mask] = hu
    lungs = np.zeros(mask.shape, np.uint8)
    lungs[:, 5:-5, 5:-5] = labels.LUNG_RIGHT.value
    return image, mask, ct, lungs, centre


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("diameter", [6.0, 12.0, 24.0])
def test_sphere_diameters_and_volume(spacing, diameter) -> None:
    image, mask, ct, lungs, centre = scene(spacing, (diameter / 2,) * 3)
    measured = measure_lesion(mask, ct, lungs, image)
    pixel = spacing[0]
    assert measured.diameters.long_axis_mm == pytest.approx(diameter, abs=1.5 * pixel)
    assert measured.diameters.short_axis_mm == pytest.approx(diameter, abs=1.5 * pixel)
    truth = 4 / 3 * np.pi * (diameter / 2) ** 3
    assert measured.volume_mm3 == pytest.approx(np.count_nonzero(mask) * np.prod(spacing), rel=1e-3)
    assert measured.volume_mm3 == pytest.approx(truth, rel=0.25 if diameter < 10 else 0.1)
    assert measured.mean_hu == pytest.approx(SOLID_HU)
    assert measured.type == "solid"
    origin = np.array(image.GetOrigin())
    expected_lps = origin + np.array(centre[::-1])
    np.testing.assert_allclose(measured.centroid_lps, expected_lps, atol=0.5 * max(spacing))


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0])
def test_ellipsoid_long_and_short_axis_in_any_direction(spacing, angle) -> None:
    image, mask, ct, lungs, _ = scene(spacing, (11.0, 5.0, 6.0), angle_deg=angle)
    diameters = axial_diameters(mask, tuple(reversed(image.GetSpacing())))
    assert diameters.long_axis_mm == pytest.approx(22.0, abs=1.5 * spacing[0])
    assert diameters.short_axis_mm == pytest.approx(10.0, abs=1.5 * spacing[0])
    assert diameters.mean_mm == pytest.approx(16.0, abs=1.5 * spacing[0])


def test_long_axis_is_on_the_slice_of_largest_extent() -> None:
    spacing = (0.703, 0.703, 2.5)
    image, z, y, x = grid(spacing)
    big = ellipsoid(z, y, x, (20.0, 35.0, 35.0), (10.0, 10.0, 1.0))   # a thin 20 mm disk
    small = ellipsoid(z, y, x, (45.0, 35.0, 35.0), (4.0, 4.0, 8.0))  # a tall 8 mm column
    diameters = axial_diameters(big | small, (2.5, 0.703, 0.703))
    assert diameters.long_axis_mm == pytest.approx(20.0, abs=1.5 * spacing[0])
    assert diameters.slice_index == 8


@pytest.mark.parametrize("core_fraction,expected", [(0.0, "ground-glass"), (0.7, "part-solid"), (1.0, "solid")])
def test_type_from_the_hu_profile(core_fraction, expected) -> None:
    spacing = (0.703, 0.703, 1.25)
    image, z, y, x = grid(spacing)
    centre = (35.0, 35.0, 35.0)
    mask = ellipsoid(z, y, x, centre, (8.0, 8.0, 8.0))
    ct = np.full(mask.shape, LUNG_HU, np.int16)
    ct[mask] = GGO_HU
    if core_fraction:
        ct[ellipsoid(z, y, x, centre, (8.0 * core_fraction,) * 3)] = SOLID_HU
    lungs = np.full(mask.shape, labels.LUNG_LEFT.value, np.uint8)
    lungs[:, :2], lungs[:, -2:] = 0, 0
    measured = measure_lesion(mask, ct, lungs, image)
    assert measured.type == expected
    if expected == "part-solid":
        assert measured.solid_component_mm == pytest.approx(2 * 8.0 * core_fraction, abs=1.5)
    else:
        assert measured.solid_component_mm is None


def test_partial_volume_rim_of_a_solid_nodule_stays_solid() -> None:
    spacing = (0.703, 0.703, 2.5)
    image, z, y, x = grid(spacing)
    centre = (35.0, 35.0, 35.0)
    mask = ellipsoid(z, y, x, centre, (4.0, 4.0, 4.0))
    ct = np.where(mask, SOLID_HU, LUNG_HU).astype(np.int16)
    rim = mask & ~ellipsoid(z, y, x, centre, (3.3, 3.3, 3.3))
    ct[rim] = -500  # border voxels averaged with lung
    kind, fraction, _ = classify_type(ct, mask)
    assert kind == "solid" and fraction >= 0.8


def test_distance_to_pleura_and_location() -> None:
    spacing = (0.703, 0.703, 2.5)
    image, z, y, x = grid(spacing, (120, 100, 120))
    lungs = np.zeros(z.shape, np.uint8)
    lungs[(x < 55) & (y > 10) & (y < 90) & (z > 10) & (z < 110)] = labels.LUNG_RIGHT.value
    lungs[(x > 65) & (x < 117) & (y > 10) & (y < 90) & (z > 10) & (z < 110)] = labels.LUNG_LEFT.value
    # a 6 mm nodule in the left lung, about 12 mm from its lateral edge (x = 117 mm), high up
    mask = ellipsoid(z, y, x, (80.0, 50.0, 102.0), (3.0, 3.0, 3.0)) & (lungs > 0)
    ct = np.where(mask, SOLID_HU, LUNG_HU).astype(np.int16)
    measured = measure_lesion(mask, ct, lungs, image)
    lateral_edge = x[lungs == labels.LUNG_LEFT.value].max()
    gap = lateral_edge - x[mask].max()
    assert measured.distance_to_pleura_mm == pytest.approx(gap, abs=spacing[0])
    assert 9.0 < measured.distance_to_pleura_mm < 14.0
    assert measured.location == "left lung, upper zone"
    # a juxtapleural nodule in the right lung, low down: distance 0
    touching = ellipsoid(z, y, x, (20.0, 50.0, 30.0), (4.0, 4.0, 4.0))
    lungs_cut = lungs.copy()
    lungs_cut[(x > 30) & (x < 55)] = 0  # the lung edge runs through the nodule's centre
    measured = measure_lesion(touching, np.where(touching, SOLID_HU, LUNG_HU).astype(np.int16), lungs_cut, image)
    assert measured.distance_to_pleura_mm == 0.0
    assert measured.location == "right lung, lower zone"


def test_empty_mask_is_refused() -> None:
    image, z, _, _ = grid((1.0, 1.0, 1.0), (20, 20, 20))
    with pytest.raises(ValueError, match="empty"):
        measure_lesion(np.zeros(z.shape, bool), np.zeros(z.shape, np.int16), np.zeros(z.shape, np.uint8), image)
