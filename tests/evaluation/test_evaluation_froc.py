"""FROC and CPM under the LUNA16 rules, on a case worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lungai.evaluation.froc import CPM_FP_RATES, Finding, ScanDetection, froc, match_detections, sensitivity_at

NODULES = [
    Finding("A", (0.0, 0.0, 0.0), 10.0),  # n1, radius 5
    Finding("A", (50.0, 50.0, 50.0), 6.0),  # n2, radius 3
    Finding("B", (0.0, 0.0, 0.0), 8.0),  # n3, radius 4
]
EXCLUDED = [Finding("B", (30.0, 30.0, 30.0), 10.0)]
DETECTIONS = [
    ScanDetection("A", (1.0, 1.0, 1.0), 0.9),  # hits n1
    ScanDetection("A", (2.0, 0.0, 0.0), 0.8),  # hits n1 again: neither TP nor FP
    ScanDetection("A", (20.0, 20.0, 20.0), 0.7),  # FP
    ScanDetection("B", (31.0, 30.0, 30.0), 0.6),  # inside the excluded finding: ignored
    ScanDetection("B", (0.0, 0.0, 3.0), 0.5),  # hits n3 (3 mm <= 4 mm)
    ScanDetection("B", (100.0, 0.0, 0.0), 0.4),  # FP
    ScanDetection("A", (50.0, 50.0, 54.0), 0.3),  # 4 mm from n2, outside its 3 mm radius: FP
    ScanDetection("A", (50.0, 50.0, 52.0), 0.2),  # hits n2
]


def test_matching_by_hand() -> None:
    best, false_positives = match_detections(DETECTIONS, NODULES, EXCLUDED)
    np.testing.assert_allclose(best, [0.9, 0.2, 0.5])
    np.testing.assert_allclose(sorted(false_positives), [0.3, 0.4, 0.7])


def test_detections_only_hit_nodules_of_their_own_scan() -> None:
    best, false_positives = match_detections([ScanDetection("C", (0.0, 0.0, 0.0), 0.9)], NODULES)
    assert np.all(np.isneginf(best))
    np.testing.assert_allclose(false_positives, [0.9])


def test_froc_curve_and_cpm_by_hand() -> None:
    result = froc(DETECTIONS, NODULES, num_scans=2, excluded=EXCLUDED)
    # thresholds 0.9 0.7 0.5 0.4 0.3 0.2 -> (FP/scan, sensitivity):
    # (0, 1/3) (0.5, 1/3) (0.5, 2/3) (1, 2/3) (1.5, 2/3) (1.5, 1), after the (0, 0) start
    np.testing.assert_allclose(result.fps_per_scan, [0, 0, 0.5, 0.5, 1, 1.5, 1.5])
    np.testing.assert_allclose(result.sensitivity, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(result.thresholds[1:], [0.9, 0.7, 0.5, 0.4, 0.3, 0.2])
    # at 1/8: 1/3 + (0.125 / 0.5) * 1/3 = 5/12; at 1/4: 1/2; at 1/2 and 1: 2/3; at 2, 4, 8: 1
    np.testing.assert_allclose(result.sensitivities_at_rates, [5 / 12, 1 / 2, 2 / 3, 2 / 3, 1, 1, 1])
    assert result.fp_rates == CPM_FP_RATES
    assert result.cpm == pytest.approx(0.75)


def test_perfect_detector_has_cpm_one_and_missed_nodules_cap_sensitivity() -> None:
    perfect = [ScanDetection(n.scan_id, n.center_mm, 0.9) for n in NODULES]
    assert froc(perfect, NODULES, num_scans=2).cpm == pytest.approx(1.0)
    one_found = froc(perfect[:1], NODULES, num_scans=2)
    np.testing.assert_allclose(one_found.sensitivities_at_rates, [1 / 3] * 7)


def test_sensitivity_at_takes_the_best_point_at_a_shared_rate() -> None:
    fps = np.array([0.0, 1.0, 1.0, 2.0])
    sens = np.array([0.0, 0.2, 0.6, 0.8])
    np.testing.assert_allclose(sensitivity_at(fps, sens, [0.5, 1.0, 1.5, 3.0]), [0.3, 0.6, 0.7, 0.8])


def test_froc_refuses_no_nodules_or_scans() -> None:
    with pytest.raises(ValueError, match="nodule"):
        froc(DETECTIONS, [], num_scans=2)
    with pytest.raises(ValueError, match="num_scans"):
        froc(DETECTIONS, NODULES, num_scans=0)
