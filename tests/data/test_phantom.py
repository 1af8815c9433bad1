"""Tests of the synthetic chest CT phantom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lungai import labels
from lungai.data.phantom import (
    _LUNGS,
    AIR_HU,
    GROUND_GLASS_HU,
    LUNG_HU,
    PARENCHYMA_TEXTURE_SD_HU,
    PART_SOLID_GLASS_HU,
    RIB_HU,
    SOLID_HU,
    Phantom,
    PhantomConfig,
    _hilum,
    make_phantom,
)

RIGHT, LEFT = labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom()


@pytest.fixture(scope="module")
def quiet() -> Phantom:
    return make_phantom(PhantomConfig(noise_sd_hu=0.0))


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _ball(image: sitk.Image, centre: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels of ``image`` within ``radius_mm`` of an LPS point."""
    size = image.GetSize()
    axes = [image.GetOrigin()[i] + image.GetSpacing()[i] * np.arange(size[i]) for i in range(3)]
    x, y, z = axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius_mm ** 2


def test_geometry(phantom: Phantom) -> None:
    image = phantom.image
    assert image.GetPixelID() == sitk.sitkInt16
    assert image.GetSize() == (192, 192, 100)
    assert image.GetSpacing() == pytest.approx((1.5, 1.5, 2.5))
    assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    assert centre == pytest.approx((0.0, 0.0, 0.0))
    for truth in (phantom.lung_labels, phantom.nodule_labels):
        assert truth.GetPixelID() == sitk.sitkUInt8
        assert truth.GetSize() == image.GetSize()
        assert truth.GetOrigin() == image.GetOrigin()


def test_deterministic_for_a_seed(phantom: Phantom) -> None:
    again = make_phantom(PhantomConfig(seed=0))
    np.testing.assert_array_equal(_array(again.image), _array(phantom.image))
    other = make_phantom(PhantomConfig(seed=1))
    assert not np.array_equal(_array(other.image), _array(phantom.image))
    np.testing.assert_array_equal(_array(other.lung_labels), _array(phantom.lung_labels))
    # the nodules' truth does not depend on the seed
    np.testing.assert_array_equal(_array(other.nodule_labels), _array(phantom.nodule_labels))


def test_tissue_values(phantom: Phantom) -> None:
    hu = _array(phantom.image)
    lungs = _array(phantom.lung_labels)
    assert np.median(hu[0, :5, :5]) == pytest.approx(AIR_HU, abs=10)
    assert np.median(hu[lungs > 0]) == pytest.approx(LUNG_HU, abs=10)
    assert hu.max() > 0.8 * RIB_HU
    # The trachea is air on the midline above the carina (x = 0, y = -5, z = 30 mm).
    trachea = _ball(phantom.image, (0.0, -5.0, 80.0), 5.0)
    assert np.median(hu[trachea]) == pytest.approx(AIR_HU, abs=30)
    noise = hu[0, :20, :20].astype(float).std()
    assert 10.0 < noise < 30.0


def test_lungs(phantom: Phantom) -> None:
    lungs = _array(phantom.lung_labels)
    assert set(np.unique(lungs)) == {0, RIGHT, LEFT}
    voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
    for value in (RIGHT, LEFT):
        assert 1000.0 < np.count_nonzero(lungs == value) * voxel_ml < 1500.0
    x_index = np.nonzero(lungs == RIGHT)[2].mean(), np.nonzero(lungs == LEFT)[2].mean()
    x_right, x_left = (phantom.image.TransformContinuousIndexToPhysicalPoint([x, 0.0, 0.0])[0]
                       for x in x_index)
    assert x_right < 0 < x_left  # LPS: the patient's right is at negative x


def test_nodules(phantom: Phantom) -> None:
    hu = _array(phantom.image)
    lungs = _array(phantom.lung_labels)
    nodules = _array(phantom.nodule_labels)
    assert [n.type for n in phantom.nodules] == ["solid", "solid", "part-solid", "ground-glass"]
    assert [n.diameter_mm for n in phantom.nodules] == [10.0, 14.0, 18.0, 12.0]
    assert all(8.0 <= n.diameter_mm <= 20.0 for n in phantom.nodules)  # the sizes that matter clinically
    assert 0.0 <= SOLID_HU <= 50.0 and -600.0 <= GROUND_GLASS_HU <= -500.0
    assert -600.0 <= PART_SOLID_GLASS_HU <= -500.0
    expected_core = {"solid": SOLID_HU, "ground-glass": GROUND_GLASS_HU}
    for number, nodule in enumerate(phantom.nodules):
        index = phantom.image.TransformPhysicalPointToIndex(nodule.centre_lps_mm)[::-1]
        assert lungs[index] > 0
        assert nodules[index] == nodule.label
        core = np.median(hu[_ball(phantom.image, nodule.centre_lps_mm, 2.0)])
        if nodule.type == "part-solid":  # 8 mm solid core, blurred with the ground glass
            assert core > PART_SOLID_GLASS_HU + 300
        else:
            assert core == pytest.approx(expected_core[nodule.type], abs=40)
        sphere_ml = np.pi / 6.0 * nodule.diameter_mm ** 3 / 1000.0
        voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
        measured_ml = np.count_nonzero(nodules == nodule.label) * voxel_ml
        if number == 0:  # juxtapleural: the part in the chest wall is not nodule
            assert 0.5 * sphere_ml < measured_ml < sphere_ml
        else:
            assert measured_ml == pytest.approx(sphere_ml, rel=0.15)
    part_solid = phantom.nodules[2]
    shell = (_ball(phantom.image, part_solid.centre_lps_mm, 6.5)
             & ~_ball(phantom.image, part_solid.centre_lps_mm, 5.5))
    assert np.median(hu[shell]) == pytest.approx(PART_SOLID_GLASS_HU, abs=40)


def test_nodule_edges_are_soft(phantom: Phantom) -> None:
    """Real nodules fade into the lung over a millimetre or two; the phantom's are not step edges."""
    hu = _array(phantom.image)
    solid = phantom.nodules[1]
    radius = solid.diameter_mm / 2.0
    rim = (_ball(phantom.image, solid.centre_lps_mm, radius + 0.75)
           & ~_ball(phantom.image, solid.centre_lps_mm, radius - 0.75))
    assert -650.0 < np.median(hu[rim]) < -150.0
    glass = phantom.nodules[3]
    outer = (_ball(phantom.image, glass.centre_lps_mm, glass.diameter_mm / 2.0 + 1.5)
             & ~_ball(phantom.image, glass.centre_lps_mm, glass.diameter_mm / 2.0 + 0.5))
    assert LUNG_HU + 30.0 < np.median(hu[outer]) < GROUND_GLASS_HU - 50.0  # haze beyond the outline


def test_parenchyma_has_texture_and_vessels_everywhere(quiet: Phantom) -> None:
    hu = _array(quiet.image).astype(float)
    lungs = _array(quiet.lung_labels)
    tissue = hu[(lungs > 0) & (hu < -750) & (_array(quiet.nodule_labels) == 0)]
    # the texture alone (no scanner noise), slightly smoothed by the blur; the robust spread
    # leaves out the vessels' partial-volume rims
    spread = 1.4826 * np.median(np.abs(tissue - np.median(tissue)))
    assert 0.7 * PARENCHYMA_TEXTURE_SD_HU < spread < 1.2 * PARENCHYMA_TEXTURE_SD_HU
    for value in (RIGHT, LEFT):
        slices = np.nonzero((lungs == value).any(axis=(1, 2)))[0]
        for third in np.array_split(slices, 3):  # upper, middle and lower third of each lung
            in_lung = lungs[third] == value
            vessel_fraction = np.mean(hu[third][in_lung] > -300)
            assert 0.002 < vessel_fraction < 0.1, (value, vessel_fraction)


def test_hila_lie_at_the_lungs_medial_surface(phantom: Phantom) -> None:
    """The pulmonary arteries enter each lung at its mediastinal surface, not deep inside it."""
    lungs = _array(phantom.lung_labels)
    hu = _array(phantom.image)
    for value, (centre, semi_axes) in _LUNGS.items():
        hilum = _hilum(centre, semi_axes)
        lateral = np.sign(centre[0])  # away from the midline, into the lung
        assert abs(hilum[0]) < abs(centre[0])
        index = phantom.image.TransformPhysicalPointToIndex(tuple(hilum))[::-1]
        assert lungs[index] == 0 and hu[index] > -100  # mediastinal soft tissue, the trunk's end
        inside = phantom.image.TransformPhysicalPointToIndex(tuple(hilum + [lateral * 4.0, 0.0, 0.0]))[::-1]
        assert lungs[inside] == value


def test_vessels_taper_from_the_hilum_without_knots(quiet: Phantom) -> None:
    """Inside the lung no vessel is thicker than the lobar branches, and thick ones stay near the hilum."""
    hu = _array(quiet.image)
    lungs = _array(quiet.lung_labels)
    near_nodule = ndimage.binary_dilation(_array(quiet.nodule_labels) > 0, iterations=4)
    vessels = (hu > -300) & (lungs > 0) & ~near_nodule
    depth = ndimage.distance_transform_edt(vessels, sampling=quiet.image.GetSpacing()[::-1])
    assert depth.max() < 5.5  # the lobar branches' radius: junctions do not form balls
    image = quiet.image
    for value, (centre, semi_axes) in _LUNGS.items():
        thick = np.argwhere((depth >= 3.0) & (lungs == value))  # vessels 6 mm across and more
        assert len(thick) > 0
        points = np.array([image.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
                           for index in thick])
        assert np.linalg.norm(points - _hilum(centre, semi_axes), axis=1).max() < 85.0


def test_other_grid_keeps_physical_anatomy() -> None:
    small = make_phantom(PhantomConfig(size=(96, 96, 50), spacing_mm=(3.0, 3.0, 5.0), seed=3))
    assert small.image.GetSize() == (96, 96, 50)
    voxel_ml = np.prod(small.image.GetSpacing()) / 1000.0
    lungs = _array(small.lung_labels)
    assert 1000.0 < np.count_nonzero(lungs == RIGHT) * voxel_ml < 1500.0
