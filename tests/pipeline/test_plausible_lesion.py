"""The nodule stage's plausibility step: implausible segmentations dropped, or kept without their attachments."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lungai.pipeline import nodules
from lungai.pipeline.detection import Detection
from lungai.pipeline.nodules import SegmentedNodule, plausible_lesion

SHAPE = (40, 80, 80)  # z, y, x
SPACING = (2.0, 1.0, 1.0)  # mm (z, y, x)


def _image() -> sitk.Image:
    image = sitk.GetImageFromArray(np.zeros(SHAPE, np.int16))
    image.SetSpacing(SPACING[::-1])
    return image


def _points() -> np.ndarray:
    grid = np.stack(np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]], axis=-1).astype(float)
    return (grid - np.array(SHAPE) / 2) * np.array(SPACING)


def _segmented(mask: np.ndarray, radius_mm: float, source: str = "blob") -> SegmentedNodule:
    centre_lps = _image().TransformContinuousIndexToPhysicalPoint([s / 2 for s in SHAPE[::-1]])
    return SegmentedNodule(Detection(tuple(centre_lps), radius_mm, 0.9, source=source),
                           tuple(slice(0, n) for n in SHAPE), mask)  # type: ignore[arg-type]


def _nodule_with_vessels() -> tuple[np.ndarray, np.ndarray]:
    points = _points()
    body = np.linalg.norm(points, axis=-1) <= 6.0
    along_x = (np.hypot(points[..., 0], points[..., 1]) <= 1.5) & (points[..., 2] > 0)
    along_y = (np.hypot(points[..., 0], points[..., 2]) <= 1.5) & (points[..., 1] < 0)
    return body, body | along_x | along_y


def test_a_nodule_whose_segmentation_ran_along_vessels_is_kept_as_its_body():
    body, segmented = _nodule_with_vessels()
    region = np.ones(SHAPE, bool)
    kept = plausible_lesion(_segmented(segmented, 3.0), _image(), region, SPACING)
    assert kept is not None
    assert (kept.mask & body).sum() >= 0.98 * body.sum()  # a voxel or two at the poles of 2 mm slices
    assert kept.mask.sum() < 1.2 * body.sum()


def test_without_detaching_the_same_segmentation_is_dropped(monkeypatch):
    _, segmented = _nodule_with_vessels()
    monkeypatch.setattr(nodules, "DETACH_VESSELS", False)
    assert plausible_lesion(_segmented(segmented, 3.0), _image(), np.ones(SHAPE, bool), SPACING) is None


def test_a_vessel_stays_dropped_and_a_plausible_nodule_is_unchanged():
    points = _points()
    vessel = np.hypot(points[..., 0], points[..., 1]) <= 2.0  # 80 mm along x
    region = np.ones(SHAPE, bool)
    assert plausible_lesion(_segmented(vessel, 2.0), _image(), region, SPACING) is None
    ball = np.linalg.norm(points, axis=-1) <= 6.0
    same = plausible_lesion(_segmented(ball, 6.0), _image(), region, SPACING)
    assert same is not None and np.array_equal(same.mask, ball)


def test_a_mass_is_only_checked():
    _, segmented = _nodule_with_vessels()
    region = np.zeros(SHAPE, bool)  # all of it outside the search region
    assert plausible_lesion(_segmented(segmented, 6.0, source="mass"), _image(), region, SPACING) is None


def test_a_plausible_segmentation_that_is_mostly_attachment_becomes_its_body():
    points = _points()
    body = np.linalg.norm(points, axis=-1) <= 4.0
    fissure = (np.abs(points[..., 0]) <= 1.0) & (np.abs(points[..., 1]) <= 12.0) & (np.abs(points[..., 2]) <= 12.0)
    segmented = body | fissure  # a nodule on a fissure, segmented with a sheet of the fissure
    region = np.ones(SHAPE, bool)
    assert nodules.implausibility(_segmented(segmented, 4.0), region, SPACING) is None  # plausible as a whole
    kept = plausible_lesion(_segmented(segmented, 4.0), _image(), region, SPACING)
    assert kept is not None
    assert kept.mask.sum() < 0.5 * segmented.sum()
    assert (kept.mask & body).sum() >= 0.95 * body.sum()


def _juxtapleural() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 12 mm nodule against a wall at x = 2 mm, segmented with a thick slab of the wall; and the region."""
    points = _points()
    ball = np.linalg.norm(points, axis=-1) <= 6.0
    wall = (points[..., 2] >= 2.0) & (points[..., 2] <= 20.0) & (np.abs(points[..., 0]) <= 8.0) & (
        np.abs(points[..., 1]) <= 8.0)
    return ball, ball | wall, points[..., 2] < 2.0


def test_a_nodule_segmented_into_the_chest_wall_is_cut_at_the_wall():
    ball, segmented, region = _juxtapleural()
    lungs = np.where(region, 1, 0).astype(np.uint8)  # one lung: the part outside lies in the wall, no mediastinum
    assert plausible_lesion(_segmented(segmented, 6.0), _image(), region, SPACING) is None  # without the cut
    kept = plausible_lesion(_segmented(segmented, 6.0), _image(), region, SPACING, lungs=lungs)
    assert kept is not None
    assert not (kept.mask & ~region).any()
    assert (kept.mask & ball & region).sum() == (ball & region).sum()
    assert kept.mask.sum() < 1.5 * (ball & region).sum()  # little of the wall slab within the region


def test_a_segmentation_that_runs_into_the_mediastinum_stays_dropped():
    _, segmented, region = _juxtapleural()
    lungs = np.where(region, 1, 0).astype(np.uint8)
    lungs[_points()[..., 2] > 30.0] = 2  # a left lung beyond the slab: the part outside lies between the lungs
    assert plausible_lesion(_segmented(segmented, 6.0), _image(), region, SPACING, lungs=lungs) is None
