"""Ground-glass candidates: a faint ball is found first, a vessel and a solid ball are not taken for ground glass."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.preprocessing.ground_glass import FEATURES, GroundGlassConfig, find_ground_glass

SPACING = (0.8, 0.8, 1.25)  # x, y, z mm
SHAPE = (64, 112, 112)  # z, y, x
GLASS_CENTRE = (-20.0, 0.0, 0.0)  # LPS mm
SOLID_CENTRE = (20.0, 20.0, 0.0)
VESSEL_Y = -20.0


def _image(with_glass: bool = True) -> tuple[sitk.Image, sitk.Image]:
    """Lung at -850 HU with noise; a 7 mm ground-glass ball at -600, a solid 5 mm ball and a 3 mm vessel at 40."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(SHAPE, SPACING[::-1])], indexing="ij")
    array = -850.0 + rng.normal(0.0, 20.0, SHAPE)
    glass = np.sqrt((x - GLASS_CENTRE[0]) ** 2 + (y - GLASS_CENTRE[1]) ** 2 + (z - GLASS_CENTRE[2]) ** 2)
    if with_glass:
        array = np.where(glass <= 7.0, -600.0 + rng.normal(0.0, 20.0, SHAPE), array)
    solid = np.sqrt((x - SOLID_CENTRE[0]) ** 2 + (y - SOLID_CENTRE[1]) ** 2 + (z - SOLID_CENTRE[2]) ** 2)
    array[solid <= 5.0] = 40.0
    array[np.hypot(y - VESSEL_Y, z) <= 1.5] = 40.0
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin([-(n / 2) * s for n, s in zip(SHAPE[::-1], SPACING)])
    lungs = sitk.GetImageFromArray(np.pad(np.ones([n - 8 for n in SHAPE], np.uint8), 4))
    lungs.CopyInformation(image)
    return image, lungs


def test_the_ground_glass_ball_comes_first():
    image, lungs = _image()
    found = find_ground_glass(image, lungs)
    assert found
    first = found[0]
    assert np.linalg.norm(np.subtract(first.centre_lps_mm, GLASS_CENTRE)) <= 3.0
    assert 3.5 <= first.radius_mm <= 10.0
    assert first.solid_fraction < 0.05 and 150.0 <= first.contrast_hu <= 350.0
    assert first.fill > 0.5 and first.rank_value > 0.2 and len(first.features()) == len(FEATURES)
    assert [c.rank_value for c in found] == sorted((c.rank_value for c in found), reverse=True)


def test_vessel_and_solid_ball_are_not_ground_glass():
    image, lungs = _image(with_glass=False)
    for candidate in find_ground_glass(image, lungs):  # at most their partial-volume rims, weakly
        near_solid = np.linalg.norm(np.subtract(candidate.centre_lps_mm, SOLID_CENTRE)) <= 8.0
        near_vessel = abs(candidate.centre_lps_mm[1] - VESSEL_Y) <= 4.0
        assert not (near_solid or near_vessel) or candidate.rank_value < 0.1


def test_limits_and_refusals():
    image, lungs = _image()
    assert len(find_ground_glass(image, lungs, GroundGlassConfig(max_candidates=2))) <= 2
    empty = sitk.Image(lungs.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(lungs)
    assert find_ground_glass(image, empty) == []
    with pytest.raises(ValueError, match="do not match"):
        find_ground_glass(image, sitk.RegionOfInterest(lungs, [50, 50, 30], [0, 0, 0]))
