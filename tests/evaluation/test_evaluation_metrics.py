"""Overlap, confusion-matrix and ROC metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from lungai.evaluation.metrics import (
    accuracy,
    confusion_counts,
    dice,
    f1_score,
    iou,
    precision,
    recall,
    roc_auc,
    roc_auc_ci,
    roc_curve,
    specificity,
    youden_point,
)

# 10 voxels: TP = 3, FP = 1, FN = 2, TN = 4
PRED = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
REF = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])


def test_confusion_counts_by_hand() -> None:
    c = confusion_counts(PRED, REF)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 2, 4)


def test_rates_by_hand() -> None:
    assert dice(PRED, REF) == pytest.approx(6 / 9)
    assert iou(PRED, REF) == pytest.approx(3 / 6)
    assert precision(PRED, REF) == pytest.approx(3 / 4)
    assert recall(PRED, REF) == pytest.approx(3 / 5)
    assert specificity(PRED, REF) == pytest.approx(4 / 5)
    assert accuracy(PRED, REF) == pytest.approx(7 / 10)
    assert f1_score(PRED, REF) == pytest.approx(6 / 9)


def test_rates_match_scikit_learn_on_random_masks() -> None:
    rng = np.random.default_rng(1)
    pred, ref = rng.random((4, 5, 6)) > 0.6, rng.random((4, 5, 6)) > 0.5
    p, r = pred.ravel(), ref.ravel()
    assert precision(pred, ref) == pytest.approx(sk.precision_score(r, p))
    assert recall(pred, ref) == pytest.approx(sk.recall_score(r, p))
    assert accuracy(pred, ref) == pytest.approx(sk.accuracy_score(r, p))
    assert f1_score(pred, ref) == pytest.approx(sk.f1_score(r, p))
    assert iou(pred, ref) == pytest.approx(sk.jaccard_score(r, p))
    assert dice(pred, ref) == pytest.approx(sk.f1_score(r, p))


def test_empty_cases() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert precision(empty, empty) == 0.0 and recall(empty, empty) == 0.0 and f1_score(empty, empty) == 0.0
    full = np.ones((3, 3), dtype=bool)
    assert dice(empty, full) == 0.0 and specificity(full, full) == 0.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        dice(np.zeros(3), np.zeros(4))


def test_auc_by_hand_with_a_tie() -> None:
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5), (0.9>0.1), (0.5=0.5 -> 1/2), (0.5>0.1) -> 3.5 / 4
    assert roc_auc([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)


def test_auc_and_curve_match_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(300) > 0.6
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    assert roc_auc(scores, labels) == pytest.approx(sk.roc_auc_score(labels, scores))
    curve = roc_curve(scores, labels)
    fpr, tpr, thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], thresholds[1:])


def test_youden_point_by_hand() -> None:
    scores = [0.1, 0.3, 0.35, 0.6, 0.7, 0.8]
    labels = [0, 0, 1, 0, 1, 1]
    # thresholds: 0.8 (J=1/3), 0.7 (J=2/3), 0.6 (J=2/3-1/3), 0.35 (J=1-1/3=2/3), 0.3 (1-2/3), 0.1 (0)
    point = youden_point(scores, labels)
    assert point.threshold == 0.7
    assert point.sensitivity == pytest.approx(2 / 3)
    assert point.specificity == 1.0


def test_youden_point_matches_scikit_learn_curve() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(200) > 0.5
    scores = rng.normal(labels * 1.0, 1.0)
    fpr, tpr, thresholds = sk.roc_curve(labels, scores)
    best = np.argmax(tpr - fpr)
    point = youden_point(scores, labels)
    assert point.threshold == pytest.approx(thresholds[best])
    assert point.sensitivity == pytest.approx(tpr[best])
    assert point.specificity == pytest.approx(1 - fpr[best])


def test_bootstrap_interval_contains_the_auc_and_is_reproducible() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(120) > 0.5
    scores = rng.normal(labels * 1.0, 1.0)
    result = roc_auc_ci(scores, labels, n_bootstrap=500, seed=7)
    assert result.auc == pytest.approx(sk.roc_auc_score(labels, scores))
    assert result.low < result.auc < result.high
    assert 0.05 < result.high - result.low < 0.3
    assert result == roc_auc_ci(scores, labels, n_bootstrap=500, seed=7)
    assert result.n_bootstrap == 500


def test_roc_refuses_one_class_and_non_finite_scores() -> None:
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="confidence"):
        roc_auc_ci([0.1, 0.2], [0, 1], confidence=1.5)
