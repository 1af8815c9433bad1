"""Registration of a real chest CT against a copy moved through a known affine transform."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from shared_data import require

from lungai.errors import RegistrationError
from lungai.followup.registration import (
    NO_OVERLAP_DICE,
    POOR_DICE,
    Registration,
    RegistrationConfig,
    _judge,
    register,
    resample_prior,
)
from lungai.io.reader import read_scan
from lungai.preprocessing.lung_mask import segment_lungs


def known_affine(image: sitk.Image) -> sitk.AffineTransform:
    """Current -> prior: 4 degrees about z, 3 % scale in x, 2 % in z, 8 mm shift (about the scan's centre)."""
    angle = np.deg2rad(4.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((rotation @ np.diag([1.03, 1.0, 0.98])).ravel().tolist())
    transform.SetTranslation((6.0, -8.0, 5.0))
    size = np.array(image.GetSize())
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    return transform


def on_grid(image: sitk.Image, spacing: tuple[float, float, float], transform: sitk.Transform | None = None,
            shift_mm: float = 0.0) -> sitk.Image:
    size = [int(n * s / t) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    grid = sitk.Image(size, sitk.sitkInt16)
    grid.SetSpacing(spacing)
    grid.SetOrigin(tuple(np.asarray(image.GetOrigin()) + [0.0, 0.0, shift_mm]))
    grid.SetDirection(image.GetDirection())
    return sitk.Resample(image, grid, transform or sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)


@pytest.fixture(scope="module")
def moved_pair(data_root: Path) -> tuple[sitk.Image, sitk.Image, sitk.AffineTransform]:
    """LIDC-IDRI-0002 at 1.5 x 1.5 x 2.5 mm (the prior) and the same chest moved onto another grid (current)."""
    scan = read_scan(require(data_root / "lidc_scans" / "LIDC-IDRI-0002" / "LIDC-IDRI-0002.nrrd")).image
    prior = on_grid(scan, (1.5, 1.5, 2.5))
    transform = known_affine(prior)
    current = on_grid(prior, (1.3, 1.3, 2.0), transform, shift_mm=-8.0)
    return prior, current, transform


@pytest.mark.slow
@pytest.mark.parametrize("per_lung_below_dice", [RegistrationConfig().per_lung_below_dice, 1.01],
                         ids=["default", "each lung refined"])
def test_known_affine_is_recovered_within_2_mm_at_lung_points(moved_pair, per_lung_below_dice) -> None:
    prior, current, truth = moved_pair
    prior_lungs, current_lungs = segment_lungs(prior).labels, segment_lungs(current).labels
    config = RegistrationConfig(per_lung_below_dice=per_lung_below_dice)
    result = register(current, current_lungs, prior, prior_lungs, config)
    assert result.quality == "good" and result.dice["overall"] > 0.95
    labels = sitk.GetArrayViewFromImage(current_lungs)
    points = np.argwhere(labels > 0)[:: 997]
    errors = []
    for zyx in points:
        point = np.asarray(current.TransformIndexToPhysicalPoint([int(v) for v in zyx[::-1]]))
        lung = "right" if labels[tuple(zyx)] == 1 else "left"
        errors.append(np.linalg.norm(result.to_prior(point, lung) - np.asarray(truth.TransformPoint(point.tolist()))))
        back = result.to_current(result.to_prior(point, lung), lung)
        assert np.allclose(back, point, atol=1e-3)
    assert len(errors) > 300
    logging.getLogger(__name__).info("error at %d lung points: median %.2f, 95th percentile %.2f, max %.2f mm",
                                     len(errors), np.median(errors), np.percentile(errors, 95), max(errors))
    assert np.percentile(errors, 95) < 2.0 and max(errors) < 3.0
    moved = resample_prior(prior, current, result)
    assert moved.GetSize() == current.GetSize() and moved.GetPixelID() == sitk.sitkInt16


def test_quality_thresholds() -> None:
    good = Registration(sitk.AffineTransform(3), dice={"overall": 0.97, "right": 0.97, "left": 0.96})
    _judge(good)
    assert good.quality == "good"
    one_lung_off = Registration(sitk.AffineTransform(3),
                                dice={"overall": 0.85, "right": 0.95, "left": POOR_DICE - 0.01})
    _judge(one_lung_off)
    assert one_lung_off.quality == "poor"
    apart = Registration(sitk.AffineTransform(3), dice={"overall": NO_OVERLAP_DICE - 0.01, "right": 0.0, "left": 0.0})
    with pytest.raises(RegistrationError) as caught:
        _judge(apart)
    assert caught.value.exit_code == 18
