"""The lesion search region, mass candidates and the lesion plausibility check."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungai import labels
from lungai.preprocessing.lesion_region import (
    MIN_SOLIDITY,
    MIN_THICKNESS_RATIO,
    detached,
    inscribed_diameter_mm,
    lesion_plausibility,
    lesion_region,
    mass_mask,
    mediastinum,
    solidity,
    wall_spill,
)
from lungai.preprocessing.measurements import axial_diameters

SPACING = 2.0  # mm, isotropic
SHAPE = (60, 80, 100)  # z, y, x voxels


def _ball(centre_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    cz, cy, cx = (c / SPACING for c in centre_mm)
    return (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= (radius_mm / SPACING) ** 2


def _images(hu: np.ndarray, lungs: np.ndarray) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing((SPACING,) * 3)
    label_image = sitk.GetImageFromArray(lungs.astype(np.uint8))
    label_image.CopyInformation(image)
    return image, label_image


def _scan_with_mass(mass_radius_mm: float) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """A left 'lung' (a 40 mm ball of air) that has lost a ball of tissue on its side to a mass."""
    lung_ball = _ball((60.0, 80.0, 100.0), 40.0)
    mass = _ball((60.0, 80.0, 120.0), mass_radius_mm)
    hu = np.full(SHAPE, 40, np.int16)  # soft tissue around the lung (chest wall, mediastinum)
    hu[lung_ball] = -850
    hu[mass] = 30
    lungs = np.where(lung_ball & ~mass, labels.LUNG_LEFT.value, 0)
    return *_images(hu, lungs), mass


def test_a_mass_that_replaces_lung_is_in_the_region_and_a_candidate():
    image, lungs, mass = _scan_with_mass(18.0)
    assert not (sitk.GetArrayViewFromImage(lungs)[mass] > 0).any()  # outside the anatomical mask
    found = lesion_region(image, lungs)
    inside = np.count_nonzero(found.region & mass) / np.count_nonzero(mass)
    assert inside > 0.5
    assert len(found.masses) == 1
    centre = np.asarray(found.masses[0].centre_lps_mm)
    assert np.linalg.norm(centre - np.array([120.0, 80.0, 60.0])) < 10.0
    box, segmented = mass_mask(found.masses[0], image, found.region)
    full = np.zeros(SHAPE, bool)
    full[box] = segmented
    dice = 2 * np.count_nonzero(full & mass) / (np.count_nonzero(full) + np.count_nonzero(mass))
    assert dice > 0.5


def test_a_small_nodule_is_not_a_mass_candidate():
    image, lungs, _ = _scan_with_mass(6.0)
    assert lesion_region(image, lungs).masses == []


def test_healthy_lung_has_no_mass_candidates_and_a_region_that_covers_it():
    lung_ball = _ball((60.0, 80.0, 100.0), 40.0)
    hu = np.where(lung_ball, -850, 40).astype(np.int16)
    hu[28:32, 38:42, :] = 40  # a vessel crossing the lung
    lungs = np.where(lung_ball, labels.LUNG_RIGHT.value, 0)
    image, label_image = _images(hu, lungs)
    found = lesion_region(image, label_image)
    assert found.masses == []
    assert found.region[lung_ball].all()
    # the chest wall far from the lung stays outside
    assert not found.region[:, :, :5].any()


@pytest.mark.parametrize("length_mm", [30.0, 60.0])
def test_a_tube_is_implausible_a_ball_is_not(length_mm):
    spacing = (1.0, 1.0, 1.0)
    region = np.ones((70, 70, 70), bool)
    box = (slice(0, 70),) * 3
    tube = np.zeros((70, 70, 70), bool)
    tube[33:37, 33:37, 5:5 + int(length_mm)] = True
    reason = lesion_plausibility(tube, box, region, spacing, long_axis_mm=length_mm)
    assert reason is not None and "tubular" in reason
    ball = np.zeros((70, 70, 70), bool)
    z, y, x = np.ogrid[:70, :70, :70]
    ball[(z - 35) ** 2 + (y - 35) ** 2 + (x - 35) ** 2 <= 10 ** 2] = True
    assert inscribed_diameter_mm(ball, spacing) / 21.0 > MIN_THICKNESS_RATIO
    assert lesion_plausibility(ball, box, region, spacing, long_axis_mm=21.0) is None


def _arm(points: np.ndarray, direction: tuple[int, int, int], radius: float, length: float) -> np.ndarray:
    """Voxels within ``radius`` of a segment from the origin along ``direction``."""
    unit = np.asarray(direction, float) / np.linalg.norm(direction)
    along = np.clip(points @ unit, 0.0, length)
    return np.linalg.norm(points - along[..., None] * unit, axis=-1) <= radius


def test_a_thick_branching_is_implausible_an_elongated_nodule_is_not():
    spacing = (1.0, 1.0, 1.0)
    points = np.stack(np.mgrid[:60, :60, :60], axis=-1).astype(float) - 30.0
    branching = np.linalg.norm(points, axis=-1) <= 4.5  # a thick junction with four branches
    for direction in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
        branching |= _arm(points, direction, 2.0, 20.0)
    region, box = np.ones(branching.shape, bool), (slice(0, 60),) * 3
    long_axis = axial_diameters(branching, spacing).long_axis_mm
    assert inscribed_diameter_mm(branching, spacing) / long_axis > MIN_THICKNESS_RATIO  # thick enough
    assert solidity(branching, spacing) < MIN_SOLIDITY
    assert "branching" in lesion_plausibility(branching, box, region, spacing, long_axis_mm=long_axis)
    ellipsoid = ((points / (6.0, 10.0, 6.0)) ** 2).sum(axis=-1) <= 1.0
    assert solidity(ellipsoid, spacing) > 0.75
    assert lesion_plausibility(ellipsoid, box, region, spacing, long_axis_mm=21.0) is None


def test_solidity_of_a_single_voxel_is_one():
    assert solidity(np.ones((1, 1, 1), bool), (2.5, 0.7, 0.7)) == pytest.approx(1.0)


def test_a_lesion_mostly_outside_the_region_is_implausible():
    spacing = (1.0, 1.0, 1.0)
    ball = np.zeros((30, 30, 30), bool)
    z, y, x = np.ogrid[:30, :30, :30]
    ball[(z - 15) ** 2 + (y - 15) ** 2 + (x - 15) ** 2 <= 8 ** 2] = True
    region = np.zeros((30, 30, 30), bool)
    region[:, :, :10] = True  # only a slab of the ball is in the lungs' region
    box = (slice(0, 30),) * 3
    assert "outside" in lesion_plausibility(ball, box, region, spacing, long_axis_mm=17.0)
    region[:, :, :] = True
    assert lesion_plausibility(ball, box, region, spacing, long_axis_mm=17.0) is None


def _checked(mask: np.ndarray, spacing: tuple[float, float, float], blob_radius_mm: float | None = None) -> str | None:
    region, box = np.ones(mask.shape, bool), tuple(slice(0, n) for n in mask.shape)
    return lesion_plausibility(mask, box, region, spacing, axial_diameters(mask, spacing).long_axis_mm,
                               blob_radius_mm)


def test_a_nodule_with_attached_vessels_is_detached_to_its_body():
    spacing = (1.0, 1.0, 1.0)
    points = np.stack(np.mgrid[:80, :80, :80], axis=-1).astype(float) - 40.0
    body = np.linalg.norm(points, axis=-1) <= 5.0  # a 10 mm nodule
    vessels = np.zeros(body.shape, bool)
    for direction in ((0, 1, 1), (1, -1, 0), (0, 0, -1)):
        vessels |= _arm(points, direction, 1.5, 38.0)
    segmented = body | vessels  # the segmentation ran along three vessels
    assert _checked(segmented, spacing, blob_radius_mm=5.0) is not None  # overgrown and branching
    centre = np.array([40.0, 40.0, 40.0])
    kept = detached(segmented, spacing, centre, search_mm=5.0)
    assert _checked(kept, spacing, blob_radius_mm=5.0) is None
    # the body survives whole and the vessels are gone but for their roots (within 2 mm of the body)
    assert (kept & body).sum() == body.sum()
    assert not (kept & (np.linalg.norm(points, axis=-1) > 7.0)).any()


def test_vessels_stay_implausible_once_detached():
    spacing = (1.0, 1.0, 1.0)
    points = np.stack(np.mgrid[:60, :60, :60], axis=-1).astype(float) - 30.0
    branching = np.zeros(points.shape[:3], bool)  # a vessel junction: four 4 mm vessels meeting
    for direction in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
        branching |= _arm(points, direction, 2.0, 20.0)
    tube = _arm(points + (0.0, 0.0, 25.0), (0, 0, 1), 2.0, 50.0)  # a straight vessel through the centre
    centre = np.array([30.0, 30.0, 30.0])
    for vessel in (branching, tube):
        assert _checked(vessel, spacing, blob_radius_mm=3.0) is not None
        body = detached(vessel, spacing, centre, search_mm=3.0)
        assert not body.any() or _checked(body, spacing, blob_radius_mm=3.0) is not None


def test_detached_handles_empty_masks_and_a_far_centre():
    spacing = (2.5, 0.7, 0.7)
    assert not detached(np.zeros((5, 20, 20), bool), spacing, np.array([2.0, 10.0, 10.0]), 3.0).any()
    mask = np.zeros((5, 40, 40), bool)
    mask[1:4, 2:8, 2:8] = True
    assert not detached(mask, spacing, np.array([2.0, 30.0, 30.0]), 3.0).any()  # nothing near the detection


def test_the_mediastinum_lies_between_the_lungs_and_a_wall_spill_beyond_it():
    lungs = np.zeros((3, 20, 30), np.uint8)
    lungs[:, 5:15, 2:10] = labels.LUNG_RIGHT.value
    lungs[:, 5:15, 20:28] = labels.LUNG_LEFT.value
    lungs[2, :, 20:] = 0  # a slice with one lung has no mediastinum
    between = mediastinum(lungs)
    assert between[:2, 5:15, 10:20].all() and between[:2].sum() == 2 * 10 * 10
    assert not between[2].any()
    region = lungs > 0
    box = (slice(0, 3), slice(0, 20), slice(0, 30))
    lateral = np.zeros(lungs.shape, bool)
    lateral[0, 8:12, 0:4] = True  # half in the right lung, half in the lateral wall
    medial = np.zeros(lungs.shape, bool)
    medial[0, 8:12, 8:12] = True  # half in the right lung, half in the mediastinum
    assert wall_spill(lateral, box, region, lungs)
    assert not wall_spill(medial, box, region, lungs)
    assert not wall_spill(lateral & region, box, region, lungs)  # nothing outside
