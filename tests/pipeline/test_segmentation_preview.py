"""The preview before each full VOI prediction: a mask bound to be dropped costs one cheap pass,
and a kept lesion's mask is exactly the full prediction's."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.inference import voi_segmentation
from lungai.inference.voi_segmentation import VoiInference
from lungai.pipeline import nodules
from lungai.pipeline.detection import Detection
from lungai.weights.resolver import load_model

SPACING_XYZ = (0.7, 0.7, 1.25)
#: The shipped settings' shape: mirrored, two scales (16 model inputs per ROI).
FULL = VoiInference(threshold=0.35, scales=(1.0, 0.7), tile_mirror=False)


@pytest.fixture(scope="module")
def scan() -> tuple[np.ndarray, sitk.Image, Detection]:
    """Lung-like tissue with one round 8 mm soft-tissue nodule in the middle."""
    zz, yy, xx = np.mgrid[:48, :96, :96]
    distance = np.sqrt(((zz - 24) * SPACING_XYZ[2]) ** 2 + ((yy - 48) * 0.7) ** 2 + ((xx - 48) * 0.7) ** 2)
    hu = np.where(distance <= 4.0, 20, -850).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(SPACING_XYZ)
    centre = image.TransformIndexToPhysicalPoint((48, 48, 24))
    return hu, image, Detection(tuple(float(c) for c in centre), 4.0, 0.9)


@pytest.fixture(scope="module")
def model():
    return load_model("resunet3d")


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    inputs: list[int] = []
    original = voi_segmentation._run_model

    def counted(model, batch):
        inputs.append(batch.shape[0])
        return original(model, batch)

    monkeypatch.setattr(voi_segmentation, "_run_model", counted)
    return inputs


def test_a_kept_lesion_gets_the_full_prediction_s_mask(scan, model, monkeypatch: pytest.MonkeyPatch) -> None:
    hu, image, detection = scan
    region = np.ones(hu.shape, bool)
    with_preview = nodules.segment_detection(model, hu, image, detection, FULL, region)
    monkeypatch.setattr(nodules, "_preview", lambda *args, **kwargs: None)
    without = nodules.segment_detection(model, hu, image, detection, FULL, region)
    assert with_preview.mask.any()
    assert with_preview.box == without.box and np.array_equal(with_preview.mask, without.mask)


def test_a_mask_outside_the_search_region_costs_one_cheap_pass(scan, model, monkeypatch: pytest.MonkeyPatch) -> None:
    hu, image, detection = scan
    inputs = _counting(monkeypatch)
    outside = np.zeros(hu.shape, bool)  # e.g. the hilum: no lesion region there
    kept = nodules.segment_detections(model, hu, image, [detection], FULL, outside)
    assert kept == []
    assert sum(inputs) <= 2  # one unmirrored input at the trained scale (run as a batch of two on the CPU)
    inputs.clear()
    monkeypatch.setattr(nodules, "_preview", lambda *args, **kwargs: None)
    assert nodules.segment_detections(model, hu, image, [detection], FULL, outside) == []
    assert sum(inputs) >= 16  # the full prediction: 8 flips at 2 scales


def test_settings_already_that_cheap_get_no_preview(scan, model, monkeypatch: pytest.MonkeyPatch) -> None:
    hu, image, detection = scan
    inputs = _counting(monkeypatch)
    cheap = VoiInference(threshold=0.35, mirror=False, tile_mirror=False)
    nodules.segment_detection(model, hu, image, detection, cheap, np.zeros(hu.shape, bool))
    assert sum(inputs) <= 2
