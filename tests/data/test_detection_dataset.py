"""Detection ROI sets: texture groups (a sampling weight, never an input) and the medial negative zone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.data.detection_dataset import RoiSet, medial_zone, texture_group
from lungai.data.lidc_vois import VOICase
from lungai.training.detection_trainer import _positive_probabilities


def _case(texture: str) -> VOICase:
    return VOICase("P", "P_R_1", 1, Path("i"), Path("m"), 8.0, {}, {"Texture_value": texture})


def test_texture_groups_follow_the_lidc_rating():
    groups = [texture_group(_case(v)) for v in ("1", "2", "3", "4", "5", "", "x")]
    assert groups == ["non-solid", "non-solid", "part-solid", "solid", "solid", "unknown", "unknown"]


def test_medial_zone_is_the_lung_next_to_the_mediastinum():
    labels = np.zeros((4, 20, 40), np.uint8)
    labels[:, 2:18, 2:16] = 1  # right lung: low x (LPS x grows to the patient's left)
    labels[:, 2:18, 24:38] = 2
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((2.0, 2.0, 2.0))
    zone = medial_zone(image, 6.0)
    assert zone[:, 10, 13:16].all() and zone[:, 10, 24:27].all()  # within 6 mm of the gap
    assert not zone[:, 10, 2:10].any() and not zone[:, 10, 30:38].any()  # lateral lung
    assert not zone[labels == 0].any()


def test_subsolid_positives_are_drawn_by_their_weight():
    rois = RoiSet(np.zeros((4, 1, 1, 1)), np.zeros((4, 1, 1, 1)), np.array([1, 1, 1, 0]),
                  ["a@bg", "b@bg", "c@bg", "negative@bg"])
    positives = np.flatnonzero(rois.labels == 1)
    assert _positive_probabilities(rois, positives, frozenset({"b"}), 1.0) is None
    p = _positive_probabilities(rois, positives, frozenset({"b"}), 4.0)
    assert np.allclose(p, [1 / 6, 4 / 6, 1 / 6])
