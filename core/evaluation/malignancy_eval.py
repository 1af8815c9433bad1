"""Malignancy evaluation against the diameter-only baseline.

A model (or the mean probability of an ensemble) is scored on the evaluation cases; the
operating threshold is chosen on the validation split (Youden's J) and only applied to the
evaluation cases; the diameter baseline is fitted on the training split. Reported: ROC AUC with
a 95% bootstrap CI, the AUC within the 8-20 mm band (where size says least), sensitivity,
specificity and the confusion matrix at the validation threshold, and the paired bootstrap CI
of the AUC difference model - diameter baseline. LIDC malignancy is radiologists' suspicion
(at least 2 readers rating malignancy > 3), not pathology.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungai.data.lidc_vois import VOICase
from lungai.evaluation.baselines import DiameterLogistic
from lungai.evaluation.cases import evaluation_cases, reference_cases
from lungai.evaluation.metrics import confusion_counts, roc_auc, roc_auc_ci, youden_point
from lungai.evaluation.predictions import load_nodule_model, malignancy_probabilities, roi_dataset

logger = logging.getLogger(__name__)

BAND_MM = (8.0, 20.0)


@dataclass(frozen=True)
class MalignancyEvalConfig:
    """One malignancy evaluation.

    Attributes:
        weights: checkpoint folders; several are an ensemble (mean probability).
        data: the folder to evaluate.
        split: ``test``, ``val`` or ``all``.
        reference: the ``lidc_vois`` folder whose train / val splits fit the diameter baseline
            and choose the threshold (default: ``data``).
        label_rule: the label rule.
        n_bootstrap: bootstrap resamples for the CIs.
        seed: bootstrap seed.
        device: where the models run.
    """

    weights: tuple[Path, ...]
    data: Path
    split: str = "test"
    reference: Path | None = None
    label_rule: str = "ge2_readers_gt3"
    n_bootstrap: int = 2000
    seed: int = 0
    device: str = "cpu"


def labelled(cases: Sequence[VOICase], rule: str) -> list[VOICase]:
    """The cases the label rule keeps."""
    return [c for c in cases if c.label(rule) is not None]


def ensemble_scores(weights: Sequence[Path], cases: Sequence[VOICase], rule: str,
                    device: str = "cpu") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean malignant probability over the models, and each model's own scores.

    Returns:
        ``(ensemble scores, {model name: scores})`` in case order.
    """
    members: dict[str, np.ndarray] = {}
    for folder in weights:
        name, model = load_nodule_model(folder, device)
        members[name] = malignancy_probabilities(model, roi_dataset(cases, name, "malignancy", rule), device=device)
    return np.mean(list(members.values()), axis=0), members


def paired_auc_difference(a: np.ndarray, b: np.ndarray, labels: np.ndarray, n_bootstrap: int = 2000,
                          seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """AUC(a) - AUC(b) on the same cases, with a paired percentile bootstrap CI.

    Returns:
        ``difference``, ``low``, ``high`` and ``p_not_better`` (fraction of resamples where
        ``a`` is not better than ``b``).
    """
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_bootstrap):
        index = rng.integers(0, labels.size, labels.size)
        y = labels[index]
        if y.all() or not y.any():
            continue
        diffs.append(roc_auc(a[index], y) - roc_auc(b[index], y))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"difference": roc_auc(a, labels) - roc_auc(b, labels), "low": float(low), "high": float(high),
            "p_not_better": float(np.mean(np.asarray(diffs) <= 0))}


def _band_auc(scores: np.ndarray, labels: np.ndarray, diameters: np.ndarray) -> float | None:
    inside = (diameters >= BAND_MM[0]) & (diameters <= BAND_MM[1])
    y = labels[inside]
    return roc_auc(scores[inside], y) if y.any() and not y.all() else None


def evaluate_malignancy(config: MalignancyEvalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score the evaluation cases and compare with the diameter baseline.

    Returns:
        ``(metrics, arrays)``: the flat metrics (``auc``, ``auc_ci``, ``auc_8_20mm``,
        ``auc_diameter_baseline``, ``auc_difference``, ...) and the per-case arrays
        (``scores``, ``baseline``, ``labels``, ``diameters``) for the report.
    """
    reference = config.reference or config.data
    rule = config.label_rule
    cases = labelled(evaluation_cases(config.data, config.split), rule)
    train = labelled(reference_cases(reference, "train"), rule)
    val = labelled(reference_cases(reference, "val"), rule)
    labels = np.array([c.label(rule) for c in cases], dtype=int)
    diameters = np.array([c.diameter_mm for c in cases])
    scores, members = ensemble_scores(config.weights, cases, rule, config.device)
    val_scores, _ = ensemble_scores(config.weights, val, rule, config.device)
    threshold = youden_point(val_scores, np.array([c.label(rule) for c in val], dtype=int)).threshold
    train_labels = np.array([c.label(rule) for c in train], dtype=int)
    baseline_model = DiameterLogistic.fit([c.diameter_mm for c in train], train_labels)
    baseline = baseline_model.predict(diameters)
    ci = roc_auc_ci(scores, labels, config.n_bootstrap, seed=config.seed)
    baseline_ci = roc_auc_ci(baseline, labels, config.n_bootstrap, seed=config.seed)
    counts = confusion_counts(scores >= threshold, labels)
    band = (diameters >= BAND_MM[0]) & (diameters <= BAND_MM[1])
    metrics: dict[str, Any] = {
        "task": "malignancy", "split": config.split, "label_rule": rule,
        "label_note": "LIDC malignancy is radiologists' suspicion (>= 2 readers rating > 3), not pathology",
        "models": list(members), "weights": [str(w) for w in config.weights],
        "n_cases": int(labels.size), "n_malignant": int(labels.sum()),
        "auc": ci.auc, "auc_ci_low": ci.low, "auc_ci_high": ci.high,
        "auc_8_20mm": _band_auc(scores, labels, diameters),
        "n_8_20mm": int(band.sum()), "n_8_20mm_malignant": int(labels[band].sum()),
        "auc_diameter_baseline": baseline_ci.auc, "auc_diameter_baseline_ci_low": baseline_ci.low,
        "auc_diameter_baseline_ci_high": baseline_ci.high,
        "auc_8_20mm_diameter_baseline": _band_auc(baseline, labels, diameters),
        "auc_difference": paired_auc_difference(scores, baseline, labels, config.n_bootstrap, config.seed),
        "threshold": threshold, "threshold_source": "Youden's J on the validation split",
        "sensitivity": counts.tp / max(counts.tp + counts.fn, 1),
        "specificity": counts.tn / max(counts.tn + counts.fp, 1),
        "confusion_matrix": {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn},
        "member_auc": {name: roc_auc(s, labels) for name, s in members.items()},
        "diameter_baseline": {"intercept": baseline_model.intercept, "slope": baseline_model.slope,
                              "mean_mm": baseline_model.mean, "std_mm": baseline_model.std},
    }
    logger.info("malignancy %s: AUC %.3f (diameter baseline %.3f)", config.split, ci.auc, baseline_ci.auc)
    return metrics, {"scores": scores, "baseline": baseline, "labels": labels, "diameters": diameters}
