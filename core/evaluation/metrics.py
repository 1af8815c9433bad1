"""Segmentation and classification metrics: overlap, confusion-matrix rates, ROC analysis.

All functions take NumPy-compatible arrays and return Python floats or small dataclasses.
Masks and labels are binarised with ``!= 0``. Conventions for empty denominators:

* Dice and IoU of two empty masks are 1 (nothing to find, nothing found);
* precision, recall, F1 and specificity with an empty denominator are 0 (scikit-learn's
  ``zero_division=0``).

Detection-level FROC / CPM is in :mod:`lungai.evaluation.froc`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata


@dataclass(frozen=True)
class ConfusionCounts:
    """Binary confusion-matrix counts.

    Attributes:
        tp: true positives.
        fp: false positives.
        fn: false negatives.
        tn: true negatives.
    """

    tp: int
    fp: int
    fn: int
    tn: int


def _ratio(numerator: float, denominator: float, empty: float = 0.0) -> float:
    return float(numerator / denominator) if denominator else empty


def confusion_counts(prediction: ArrayLike, reference: ArrayLike) -> ConfusionCounts:
    """Count agreement between a binary prediction and a binary reference.

    Args:
        prediction: predicted mask or labels (non-zero = positive).
        reference: ground-truth mask or labels, same shape.

    Returns:
        The four counts.

    Raises:
        ValueError: if the shapes differ.
    """
    pred = np.asarray(prediction) != 0
    ref = np.asarray(reference) != 0
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=pred.size - tp - fp - fn)


def dice(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Dice coefficient ``2 TP / (2 TP + FP + FN)``; 1 when both are empty."""
    c = confusion_counts(prediction, reference)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, empty=1.0)


def iou(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Intersection over union ``TP / (TP + FP + FN)``; 1 when both are empty."""
    c = confusion_counts(prediction, reference)
    return _ratio(c.tp, c.tp + c.fp + c.fn, empty=1.0)


def precision(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Precision ``TP / (TP + FP)``; 0 when nothing is predicted."""
    c = confusion_counts(prediction, reference)
    return _ratio(c.tp, c.tp + c.fp)


def recall(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Recall (sensitivity) ``TP / (TP + FN)``; 0 when the reference is empty."""
    c = confusion_counts(prediction, reference)
    return _ratio(c.tp, c.tp + c.fn)


def specificity(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Specificity ``TN / (TN + FP)``; 0 when the reference has no negatives."""
    c = confusion_counts(prediction, reference)
    return _ratio(c.tn, c.tn + c.fp)


def accuracy(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Accuracy ``(TP + TN) / all``; 0 for empty inputs."""
    c = confusion_counts(prediction, reference)
    return _ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn)


def f1_score(prediction: ArrayLike, reference: ArrayLike) -> float:
    """F1 score ``2 TP / (2 TP + FP + FN)``; 0 when there is nothing to find and nothing found.

    Equal to :func:`dice` except for the empty case, where it follows scikit-learn.
    """
    c = confusion_counts(prediction, reference)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def _scores_and_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel() != 0
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    if y.all() or not y.any():
        raise ValueError("ROC analysis needs both positive and negative labels")
    return s, y


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve, by the Mann-Whitney U statistic (ties count one half).

    Args:
        scores: higher means more likely positive.
        labels: binary ground truth.

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: if the sizes differ, a score is not finite, or only one class is present.
    """
    s, y = _scores_and_labels(scores, labels)
    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class ROCCurve:
    """Operating points of a ROC curve, from the strictest threshold to the loosest.

    Attributes:
        fpr: false-positive rates, starting at 0.
        tpr: true-positive rates, starting at 0.
        thresholds: a sample is positive when its score >= the threshold; the first is +inf.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> ROCCurve:
    """All operating points of a scorer, one per distinct score.

    Args:
        scores: higher means more likely positive.
        labels: binary ground truth.

    Returns:
        The curve.

    Raises:
        ValueError: as :func:`roc_auc`.
    """
    s, y = _scores_and_labels(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = (last_of_run + 1) - tp
    return ROCCurve(
        fpr=np.r_[0.0, fp / (~y).sum()],
        tpr=np.r_[0.0, tp / y.sum()],
        thresholds=np.r_[np.inf, s[last_of_run]],
    )


@dataclass(frozen=True)
class RocPoint:
    """A threshold and the rates it gives.

    Attributes:
        threshold: positive when score >= threshold.
        sensitivity: true-positive rate.
        specificity: true-negative rate.
    """

    threshold: float
    sensitivity: float
    specificity: float


def youden_point(scores: ArrayLike, labels: ArrayLike) -> RocPoint:
    """The operating point that maximises Youden's J = sensitivity + specificity - 1.

    Ties go to the strictest threshold (the first on the curve).

    Args:
        scores: higher means more likely positive.
        labels: binary ground truth.

    Returns:
        The threshold with its sensitivity and specificity.

    Raises:
        ValueError: as :func:`roc_auc`.
    """
    curve = roc_curve(scores, labels)
    j = curve.tpr - curve.fpr
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])  # tolerance: equal J computed differently
    return RocPoint(
        threshold=float(curve.thresholds[best]),
        sensitivity=float(curve.tpr[best]),
        specificity=float(1 - curve.fpr[best]),
    )


@dataclass(frozen=True)
class AUCWithCI:
    """An AUC and its bootstrap confidence interval.

    Attributes:
        auc: the AUC on the full sample.
        low: lower bound of the interval.
        high: upper bound of the interval.
        confidence: the interval's level, e.g. 0.95.
        n_bootstrap: resamples that had both classes and entered the interval.
    """

    auc: float
    low: float
    high: float
    confidence: float
    n_bootstrap: int


def roc_auc_ci(
    scores: ArrayLike, labels: ArrayLike, n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0
) -> AUCWithCI:
    """ROC AUC with a percentile bootstrap confidence interval.

    Cases are resampled with replacement; resamples with a single class are skipped.

    Args:
        scores: higher means more likely positive.
        labels: binary ground truth.
        n_bootstrap: number of resamples drawn.
        confidence: interval level in (0, 1).
        seed: seed of the resampling, for reproducible intervals.

    Returns:
        The AUC and its interval.

    Raises:
        ValueError: as :func:`roc_auc`, for a confidence outside (0, 1), or if no resample
            had both classes.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s, y = _scores_and_labels(scores, labels)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_bootstrap):
        index = rng.integers(0, s.size, s.size)
        if y[index].all() or not y[index].any():
            continue
        aucs.append(roc_auc(s[index], y[index]))
    if not aucs:
        raise ValueError("no bootstrap resample contained both classes")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return AUCWithCI(auc=roc_auc(s, y), low=float(low), high=float(high), confidence=confidence, n_bootstrap=len(aucs))


def youden_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The Youden threshold, made finite: "nothing is positive" becomes just above the highest score."""
    threshold = youden_point(scores, labels).threshold
    return threshold if np.isfinite(threshold) else float(np.nextafter(np.max(scores), np.inf))
