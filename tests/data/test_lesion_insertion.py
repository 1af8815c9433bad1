"""Lesion insertion: real VOI nodules pasted into a real thorax."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from detection_cases import inserted_small_scan, large_voi, small_background
from scipy import ndimage
from shared_data import require

from lungai.data.detection_dataset import DetectionDataConfig, negative_points
from lungai.data.lesion_insertion import (
    ELASTIX_NODULE,
    Background,
    InsertionConfig,
    augment_voi,
    load_background,
    place_nodules,
)
from lungai.data.lidc_vois import VOISample

pytestmark = pytest.mark.slow  # real scans (cip_small, lidc_vois)


def test_outside_the_pasted_region_the_scan_is_unchanged(data_root):
    background, scan = inserted_small_scan(data_root)
    before = sitk.GetArrayFromImage(background.image)
    after = sitk.GetArrayFromImage(scan.image)
    mask = sitk.GetArrayFromImage(scan.mask) > 0
    changed = before != after
    assert changed.any()
    # The blend reaches at most a few blending sigmas (1 mm) past the mask: one 4 mm voxel.
    near = ndimage.binary_dilation(mask, iterations=2)
    assert not (changed & ~near).any()
    assert after.dtype == before.dtype and scan.image.GetSize() == background.image.GetSize()


def test_pasted_mask_lies_inside_the_lungs_and_carries_the_nodule(data_root):
    background, scan = inserted_small_scan(data_root)
    mask = sitk.GetArrayFromImage(scan.mask) > 0
    lungs = sitk.GetArrayFromImage(background.lungs) > 0
    assert mask.sum() > 10 and lungs[mask].all()
    after = sitk.GetArrayFromImage(scan.image)
    before = sitk.GetArrayFromImage(background.image)
    assert after[mask].mean() > before[mask].mean() + 200  # soft tissue pasted into aerated lung
    centre = np.argwhere(mask).mean(axis=0)[::-1]
    centre_lps = scan.image.TransformContinuousIndexToPhysicalPoint(centre.tolist())
    assert np.linalg.norm(np.subtract(centre_lps, scan.nodules[0].centre_lps_mm)) < 1e-6
    assert scan.nodules[0].diameter_mm > 10


def test_excluded_regions_are_never_used(data_root):
    background = small_background(data_root)
    excluded = np.zeros_like(background.excluded)
    excluded[:, :, : excluded.shape[2] // 2] = True  # half of every slice, one lung
    restricted = Background(background.name, background.image, background.lungs, excluded)
    rng = np.random.default_rng(3)
    voi = large_voi(data_root, 8.0)
    scan = place_nodules(restricted, [augment_voi(voi, rng) for _ in range(3)], rng)
    mask = sitk.GetArrayFromImage(scan.mask)
    assert scan.nodules and not mask[excluded].any()
    assert len(np.unique(mask[mask > 0])) == len(scan.nodules)


def test_a_juxtapleural_nodule_touches_the_wall_and_leaves_the_wall_outside_its_mask_alone(data_root):
    background = small_background(data_root)
    rng = np.random.default_rng(2)
    voi = large_voi(data_root, 8.0)
    samples = [augment_voi(voi, rng) for _ in range(2)]
    scan = place_nodules(background, samples, rng, InsertionConfig(pleural_fraction=1.0))
    assert len(scan.nodules) == 2
    labels = sitk.GetArrayFromImage(scan.mask)
    lungs = sitk.GetArrayFromImage(background.lungs) > 0
    before = sitk.GetArrayFromImage(background.image)
    after = sitk.GetArrayFromImage(scan.image)
    for value in (1, 2):
        mask = labels == value
        inside = lungs[mask].mean()
        assert 0.5 <= inside < 1.0  # reaches into the wall, most of it in the lung
    # Outside the lungs only the nodules' own voxels change: no halo of the VOI's parenchyma in the wall.
    changed = before != after
    assert not (changed & ~lungs & (labels == 0)).any()
    assert (changed & ~lungs & (labels > 0)).any()


def test_no_pleural_share_places_exactly_as_before(data_root):
    background = small_background(data_root)
    voi = large_voi(data_root, 8.0)
    scans = [place_nodules(background, [voi, voi], np.random.default_rng(5), config)
             for config in (None, InsertionConfig(pleural_fraction=0.0))]
    assert np.array_equal(sitk.GetArrayFromImage(scans[0].image), sitk.GetArrayFromImage(scans[1].image))
    lungs = sitk.GetArrayFromImage(background.lungs) > 0
    assert lungs[sitk.GetArrayFromImage(scans[0].mask) > 0].all()


def test_augmentation_keeps_the_nodule(data_root):
    voi = large_voi(data_root)
    flipped = augment_voi(voi, np.random.default_rng(1))
    assert flipped.mask.sum() == voi.mask.sum()
    assert np.isclose(flipped.image.mean(), voi.image.mean())


def test_a_ground_glass_nodule_keeps_its_faint_density(data_root):
    # A -600 HU ground-glass ball in -850 HU lung: pasting must not flatten or brighten it.
    size, spacing = 31, (1.0, 0.7, 0.7)
    zz, yy, xx = np.meshgrid(*[(np.arange(size) - size // 2) * s for s in spacing], indexing="ij")
    ball = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2) <= 7.0
    image = np.where(ball, -600, -850).astype(np.float32)
    voi = VOISample("ggn", image, ball.astype(np.uint8), spacing, (0.0, 0.0, 0.0), None)
    scan = place_nodules(small_background(data_root), [voi], np.random.default_rng(0))
    assert len(scan.nodules) == 1
    mask = sitk.GetArrayFromImage(scan.mask) > 0
    after = sitk.GetArrayFromImage(scan.image)
    assert abs(float(np.median(after[mask])) - (-600.0)) < 40
    assert after[mask].max() < -400  # no solid core appears


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, -1, 0, 0, 0, -1),
                                       (0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1)])
def test_the_excluded_sphere_is_every_voxel_within_its_radius(direction):
    from lungai.data.lesion_insertion import _sphere

    image = sitk.Image([40, 36, 24], sitk.sitkInt16)
    image.SetSpacing([0.7, 0.9, 2.5])
    image.SetOrigin([-12.0, 30.0, -40.0])
    image.SetDirection(direction)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([35.5, 3.0, 20.2]))  # near a corner
    indices = np.stack(np.meshgrid(*[np.arange(n) for n in image.GetSize()], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([image.TransformIndexToPhysicalPoint([int(i) for i in index]) for index in indices])
    expected = (np.linalg.norm(points - centre, axis=1) <= 9.0).reshape(image.GetSize()).transpose(2, 1, 0)
    mask = _sphere(image, centre, 9.0)
    assert mask.shape == expected.shape and mask.any()
    assert np.array_equal(mask, expected)
    assert not _sphere(image, centre + 500.0, 9.0).any()  # wholly outside the scan


def test_negatives_never_lie_on_a_known_lesion(data_root):
    background = small_background(data_root)
    config = DetectionDataConfig(hard_negatives=50, random_negatives=200)
    points = negative_points(background, config, np.random.default_rng(0))
    index = np.array([background.image.TransformPhysicalPointToIndex(p.tolist()) for p in points])
    lesions = np.zeros_like(background.excluded)
    lesions[index[0, 2], index[0, 1], index[0, 0]] = True  # the strongest filter blob is a known lesion
    lesions[:, :, : lesions.shape[2] // 3] = True  # and a third of every slice
    marked = replace(background, lesions=lesions)
    kept = negative_points(marked, config, np.random.default_rng(0))
    on = lesions[index[:, 2], index[:, 1], index[:, 0]]
    assert on.any() and not on.all()
    # The same draws, less those on a lesion: the other negatives are unchanged.
    assert np.array_equal(kept, points[~on])
    assert np.array_equal(marked.known_lesions(), lesions)
    assert np.array_equal(background.known_lesions(), background.excluded)


def test_the_small_nodule_of_elastix_chest_is_a_known_lesion_not_an_excluded_site(data_root):
    require(data_root / "backgrounds" / "elastix_chest.nrrd")
    background = load_background("elastix_chest", data_root)
    x, y, z = background.image.TransformPhysicalPointToIndex(ELASTIX_NODULE[0])
    hu = sitk.GetArrayViewFromImage(background.image)
    assert hu[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2].mean() > -300  # solid tissue at its centre
    assert background.known_lesions()[z, y, x] and not background.excluded[z, y, x]
    assert (background.known_lesions() & ~background.excluded).sum() * np.prod(background.image.GetSpacing()) \
        == pytest.approx(4 / 3 * np.pi * ELASTIX_NODULE[1] ** 3, rel=0.15)
