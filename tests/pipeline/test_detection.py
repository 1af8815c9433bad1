"""Nodule detection: candidates on a real thorax with a pasted real nodule, operating points, classifier path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detection_cases import inserted_small_scan

from lungai.models.convlstm_nodule import ConvLSTMNoduleConfig
from lungai.models.registry import build_model
from lungai.pipeline.detection import BATCH_SIZE, DetectionConfig, detect_nodules, ground_glass_scorer, roi_scores
from lungai.pipeline.operating_points import operating_point
from lungai.preprocessing.candidates import find_candidates
from lungai.preprocessing.detection_rois import DETECTION_ROI, extract_rois
from lungai.preprocessing.lung_mask import segment_lungs
from lungai.weights.resolver import load_model

pytestmark = pytest.mark.slow  # real scans (cip_small, lidc_vois)


@pytest.fixture(scope="module")
def case(data_root):
    _, scan = inserted_small_scan(data_root)
    return scan, segment_lungs(scan.image).labels


def _hits(points, nodule):
    return [p for p in points if np.linalg.norm(np.subtract(p, nodule.centre_lps_mm)) <= nodule.diameter_mm / 2]


def test_candidate_filter_finds_the_inserted_nodule(case):
    scan, lungs = case
    candidates = find_candidates(scan.image, lungs)
    assert candidates
    nodule = scan.nodules[0]
    hits = [c for c in candidates if _hits([c.centre_lps_mm], nodule)]
    assert hits, "no candidate within the pasted nodule's radius"
    assert hits[0].radius_mm >= nodule.diameter_mm / 4  # the scale fits the nodule, not a vessel
    strengths = [c.strength for c in candidates]
    assert strengths == sorted(strengths, reverse=True)


def test_operating_point_changes_the_detections(case):
    scan, lungs = case
    high = detect_nodules(scan.image, lungs, DetectionConfig(operating_point="high"))
    specific = detect_nodules(scan.image, lungs, DetectionConfig(operating_point="specific"))
    assert len(high) > len(specific)
    assert {d.centre_lps_mm for d in specific} <= {d.centre_lps_mm for d in high}
    assert all(d.score >= operating_point("specific", with_classifier=False).threshold for d in specific)
    everything = detect_nodules(scan.image, lungs, DetectionConfig(threshold=0.0))
    assert len(everything) >= len(high) and _hits([d.centre_lps_mm for d in everything], scan.nodules[0])


def test_unknown_operating_point_is_refused(case):
    scan, lungs = case
    with pytest.raises(ValueError, match="operating point"):
        detect_nodules(scan.image, lungs, DetectionConfig(operating_point="paranoid"))


def test_classifier_scores_every_candidate(case):
    scan, lungs = case
    torch.manual_seed(0)
    model = build_model("convlstm_nodule", ConvLSTMNoduleConfig(conv_filters=2, lstm_filters=(2, 2), head_filters=2))
    found = detect_nodules(scan.image, lungs, DetectionConfig(threshold=0.0), classifier=model)
    candidates = find_candidates(scan.image, lungs)
    assert len([d for d in found if d.source == "blob"]) == len(candidates)
    assert len([d for d in found if d.source == "ground_glass"]) <= ground_glass_scorer().top
    assert all(0.0 <= d.score <= 1.0 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_rois_are_centred_on_the_point(case):
    scan, _ = case
    centre = scan.nodules[0].centre_lps_mm
    roi = extract_rois(scan.image, [centre])[0]
    assert roi.shape == DETECTION_ROI.shape
    z, y, x = (n // 2 for n in roi.shape)
    # the nodule (soft tissue, normalised > 0.5) fills the centre, aerated lung fills a corner
    assert roi[z - 1:z + 1, y - 2:y + 2, x - 2:x + 2].mean() > 0.55
    assert roi[:, :3, :3].mean() < roi[z - 1:z + 1, y - 2:y + 2, x - 2:x + 2].mean()


def test_roi_scores_in_calls_of_the_batch_size_keep_each_roi_s_score() -> None:
    classifier = load_model("convlstm_nodule")
    rois = np.random.default_rng(0).normal(size=(2 * BATCH_SIZE + 3, *DETECTION_ROI.shape)).astype(np.float32)
    rois[5] += 1.5  # a brighter ROI among them: scores differ, so a mix-up would show
    batched = roi_scores(classifier, rois)
    alone = np.array([roi_scores(classifier, rois[i:i + 1])[0] for i in (0, 5, BATCH_SIZE, len(rois) - 1)])
    np.testing.assert_allclose(batched[[0, 5, BATCH_SIZE, len(rois) - 1]], alone, atol=1e-6)
    np.testing.assert_allclose(roi_scores(classifier, rois, batch_size=len(rois)), batched, atol=1e-6)
    assert np.ptp(batched) > 1e-3
