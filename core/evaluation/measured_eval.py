"""Evaluation of the measured scorer (``measured_nodule``): suspicion of malignancy and characteristics.

The checkpoint is applied to the features ``lungai run`` computes (LungAI's own segmentation
of each VOI, :func:`lungai.data.voi_features.voi_features`); nothing is refitted on the
evaluation cases. Reported for the malignancy head (radiologists' suspicion on LIDC, not
pathology):

* ROC AUC with a bootstrap CI, and the paired bootstrap CI of its difference from two
  comparison scorers fitted on the training split: the readers' diameter alone
  (:class:`~lungai.evaluation.baselines.DiameterLogistic`) and LungAI's measured size alone
  (log volume, long and short axis: a model that only measures), overall, within 8-20 mm, and
  within solid and subsolid nodules (the readers' texture rating 5 against 1-4);
* calibration: ECE (10 bins), Brier score and a reliability diagram
  (:mod:`lungai.evaluation.calibration`); sensitivity and specificity at the validation
  Youden threshold.

Per characteristic: ROC AUC (binary) or accuracy, balanced accuracy and confusion matrix
(texture) at the reported decision, against a simple baseline: the HU rules for texture (the
nodule type rule) and calcification (at least :data:`CALCIFIED_RULE_FRACTION` of the voxels at
or above 200 HU), LungAI's measured size alone for spiculation, lobulation and margin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lungai.data.lidc_characteristics import CHARACTERISTICS, TEXTURES
from lungai.data.lidc_vois import VOICase
from lungai.data.voi_features import voi_features
from lungai.evaluation.baselines import DiameterLogistic
from lungai.evaluation.calibration import brier_score, expected_calibration_error
from lungai.evaluation.cases import evaluation_cases, reference_cases
from lungai.evaluation.logistic import fit_logistic
from lungai.evaluation.malignancy_eval import BAND_MM, labelled, paired_auc_difference
from lungai.evaluation.metrics import confusion_counts, roc_auc, roc_auc_ci, youden_point
from lungai.models.checkpoint import load_model, read_header
from lungai.models.measured_nodule import MeasuredNodule
from lungai.preprocessing.measurements import GROUND_GLASS_FRACTION, SOLID_FRACTION
from lungai.preprocessing.nodule_features import FEATURE_NAMES

logger = logging.getLogger(__name__)

SUSPICION_NOTE = ("LIDC malignancy is radiologists' suspicion (>= 2 readers rating > 3), not pathology: "
                  "the score estimates radiologists' suspicion on LIDC")
#: The calcification HU rule: calcified when at least this fraction of the mask is >= 200 HU.
CALCIFIED_RULE_FRACTION = 0.10
SIZE_FEATURES = ("log_volume", "long_axis", "short_axis")


@dataclass(frozen=True)
class MeasuredEvalConfig:
    """One evaluation of a ``measured_nodule`` checkpoint.

    Attributes:
        weights: the checkpoint folder.
        data: the folder to evaluate.
        split: ``test``, ``val`` or ``all``.
        reference: the ``lidc_vois`` folder whose train / val splits fit the comparison scorers
            and choose the threshold (default: ``data``).
        label_rule: the malignancy label rule.
        n_bootstrap: bootstrap resamples.
        seed: bootstrap seed.
    """

    weights: Path
    data: Path
    split: str = "test"
    reference: Path | None = None
    label_rule: str = "ge2_readers_gt3"
    n_bootstrap: int = 2000
    seed: int = 0


def is_measured_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a :class:`~lungai.models.measured_nodule.MeasuredNodule` checkpoint."""
    return read_header(folder).get("architecture") == MeasuredNodule.__name__


def measured_probabilities(model: MeasuredNodule, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's probabilities for the feature rows ``x``.

    Raises:
        ValueError: the checkpoint was fitted on other features than this LungAI measures.
    """
    if tuple(model.config.features) != FEATURE_NAMES:
        raise ValueError("the measured_nodule checkpoint was fitted on other features than this LungAI measures")
    with torch.no_grad():
        heads = model.probabilities(torch.as_tensor(x, dtype=torch.float32))
    return {k: v.numpy().astype(float) for k, v in heads.items()}


def balanced_accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y``."""
    return float(np.mean([np.mean(predicted[y == k] == k) for k in np.unique(y)]))


def texture_hu_rule(solid_fraction: np.ndarray) -> np.ndarray:
    """The HU rule's texture class, index into :data:`~lungai.data.lidc_characteristics.TEXTURES`
    (:func:`lungai.preprocessing.measurements.classify_type` on the solid fraction)."""
    return np.where(solid_fraction >= SOLID_FRACTION, 2, np.where(solid_fraction < GROUND_GLASS_FRACTION, 0, 1))


def _column(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, FEATURE_NAMES.index(name)]


def _size_scorer(train_x: np.ndarray, train_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    index = [FEATURE_NAMES.index(n) for n in SIZE_FEATURES]
    return fit_logistic(train_x[:, index], train_y, 2).predict(x[:, index])


def _comparison(scores: np.ndarray, other: np.ndarray, y: np.ndarray, inside: np.ndarray,
                config: MeasuredEvalConfig) -> dict[str, Any] | None:
    """AUCs of both scorers within ``inside`` and the paired CI of their difference (``None``: one class)."""
    if not (y[inside].any() and not y[inside].all()):
        return None
    return {"n": int(inside.sum()), "n_malignant": int(y[inside].sum()), "auc": roc_auc(scores[inside], y[inside]),
            "auc_other": roc_auc(other[inside], y[inside]),
            "difference": paired_auc_difference(scores[inside], other[inside], y[inside], config.n_bootstrap,
                                                config.seed)}


def _subsets(cases: list[VOICase], diameters: np.ndarray) -> dict[str, np.ndarray]:
    texture = np.array([CHARACTERISTICS["texture"][0](c.analysis) for c in cases], dtype=float)
    return {"all": np.ones(len(cases), bool), "8_20mm": (diameters >= BAND_MM[0]) & (diameters <= BAND_MM[1]),
            "solid": texture == 2, "subsolid": texture < 2}


def evaluate_measured(config: MeasuredEvalConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score the evaluation cases (see the module docstring).

    Returns:
        ``(metrics, arrays)``: the metrics, and per-case ``scores``, ``baseline``, ``size_scores``,
        ``labels``, ``diameters`` for the ROC and reliability plots.
    """
    reference, rule = config.reference or config.data, config.label_rule
    model = load_model(config.weights)
    assert isinstance(model, MeasuredNodule)
    settings = read_header(config.weights).get("inference") or {}
    cases = labelled(evaluation_cases(config.data, config.split), rule)
    train, val = (labelled(reference_cases(reference, p), rule) for p in ("train", "val"))
    x, x_train, x_val = voi_features(cases), voi_features(train), voi_features(val)
    y, y_train, y_val = (np.array([c.label(rule) for c in part], int) for part in (cases, train, val))
    diameters = np.array([c.diameter_mm for c in cases])
    heads = measured_probabilities(model, x)
    scores = heads["malignancy"]
    baseline = DiameterLogistic.fit([c.diameter_mm for c in train], y_train).predict(diameters)
    size_scores = _size_scorer(x_train, y_train, x)
    threshold = youden_point(measured_probabilities(model, x_val)["malignancy"], y_val).threshold
    counts = confusion_counts(scores >= threshold, y)
    ci = roc_auc_ci(scores, y, config.n_bootstrap, seed=config.seed)
    subsets = _subsets(cases, diameters)
    metrics: dict[str, Any] = {
        "task": "malignancy", "model": "measured_nodule", "weights": str(config.weights), "split": config.split,
        "label_rule": rule, "label_note": SUSPICION_NOTE, "n_cases": int(y.size), "n_malignant": int(y.sum()),
        "auc": ci.auc, "auc_ci_low": ci.low, "auc_ci_high": ci.high,
        "vs_diameter": {name: _comparison(scores, baseline, y, inside, config) for name, inside in subsets.items()},
        "vs_measured_size": {name: _comparison(scores, size_scores, y, inside, config)
                             for name, inside in subsets.items()},
        "auc_diameter_baseline": roc_auc(baseline, y), "auc_measured_size": roc_auc(size_scores, y),
        "ece": expected_calibration_error(scores, y), "brier": brier_score(scores, y),
        "ece_bins": 10, "calibration": settings.get("malignancy_calibration"),
        "threshold": threshold, "threshold_source": "Youden's J on the validation split",
        "sensitivity": counts.tp / max(counts.tp + counts.fn, 1),
        "specificity": counts.tn / max(counts.tn + counts.fp, 1),
        "confusion_matrix": {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn},
        "characteristics": _characteristics(heads, x, x_train, cases, train, settings, y),
    }
    logger.info("measured_nodule %s: AUC %.3f (diameter %.3f), ECE %.3f", config.split, ci.auc,
                metrics["auc_diameter_baseline"], metrics["ece"])
    return metrics, {"scores": scores, "baseline": baseline, "size_scores": size_scores, "labels": y,
                     "diameters": diameters}


def _characteristics(heads: dict[str, np.ndarray], x: np.ndarray, x_train: np.ndarray, cases: list[VOICase],
                     train: list[VOICase], settings: dict[str, Any], malignant: np.ndarray) -> dict[str, Any]:
    """Every characteristic head on the evaluation cases, beside its baseline."""
    out: dict[str, Any] = {"texture": _texture(heads["texture"], x, cases)}
    present_from = float(settings.get("present_from", 0.5))
    for head in ("calcification", "spiculation", "lobulation", "ill_defined_margin"):
        label = CHARACTERISTICS[head][0]
        y = np.array([label(c.analysis) for c in cases], float)
        known = ~np.isnan(y)
        yk, p = y[known].astype(int), heads[head][known]
        if head == "calcification":
            baseline_name, baseline = "HU rule (calcified fraction)", _column(x, "calcified_fraction")[known]
            baseline_hits = baseline >= CALCIFIED_RULE_FRACTION
        else:
            train_y = np.array([label(c.analysis) for c in train], float)
            keep = ~np.isnan(train_y)
            baseline_name = "measured size alone"
            baseline = _size_scorer(x_train[keep], train_y[keep].astype(int), x[known])
            baseline_hits = baseline >= present_from
        out[head] = {"n": int(yk.size), "n_present": int(yk.sum()), "auc": roc_auc(p, yk),
                     "accuracy": float(np.mean((p >= present_from) == yk)), "baseline": baseline_name,
                     "baseline_auc": roc_auc(baseline, yk), "baseline_accuracy": float(np.mean(baseline_hits == yk))}
    calcified = heads["calcification"] >= float(settings.get("calcified_category1_from", 1.0))
    out["calcification"]["category1_rule"] = {
        "threshold": settings.get("calcified_category1_from"), "n_called": int(calcified.sum()),
        "n_called_malignant": int((calcified & (malignant == 1)).sum()),
        "n_called_not_calcified": int(sum(1 for c, hit in zip(cases, calcified)
                                          if hit and CHARACTERISTICS["calcification"][0](c.analysis) == 0))}
    return out


def _texture(probability: np.ndarray, x: np.ndarray, cases: list[VOICase]) -> dict[str, Any]:
    y = np.array([CHARACTERISTICS["texture"][0](c.analysis) for c in cases], float)
    known = ~np.isnan(y)
    yk = y[known].astype(int)
    model = probability[known].argmax(1)
    solid_fraction = _column(x, "solid_fraction")[known]
    rule = texture_hu_rule(solid_fraction)

    def summary(predicted: np.ndarray) -> dict[str, Any]:
        return {"accuracy": float(np.mean(predicted == yk)), "balanced_accuracy": balanced_accuracy(predicted, yk),
                "confusion": [[int(np.sum((yk == t) & (predicted == p))) for p in range(3)] for t in range(3)]}

    subsolid = (yk < 2).astype(int)
    both = 0 < subsolid.sum() < yk.size
    return {"classes": list(TEXTURES), "n": int(yk.size), "n_by_class": np.bincount(yk, minlength=3).tolist(),
            "model": summary(model), "hu_rule": summary(rule),
            "subsolid_auc": roc_auc(1 - probability[known, 2], subsolid) if both else None,
            "subsolid_auc_hu_rule": roc_auc(-solid_fraction, subsolid) if both else None}


def _difference_cell(block: dict[str, Any] | None) -> str:
    if block is None:
        return "n/a (one class)"
    d = block["difference"]
    return (f"{block['auc']:.3f} vs {block['auc_other']:.3f}: {d['difference']:+.3f} "
            f"({d['low']:+.3f} to {d['high']:+.3f})")


def measured_markdown(metrics: dict[str, Any], roc_png: str, reliability_png: str) -> str:
    """The report of :func:`evaluate_measured`."""
    lines = [f"# Measured scorer ({metrics['split']} split)", "",
             f"{metrics['n_cases']} nodules, {metrics['n_malignant']} malignant. {metrics['label_note']}.", "",
             f"ROC AUC {metrics['auc']:.3f} (95% bootstrap CI {metrics['auc_ci_low']:.3f}-"
             f"{metrics['auc_ci_high']:.3f}); "
             f"ECE {metrics['ece']:.3f} (10 equal-width bins), Brier {metrics['brier']:.3f} "
             f"({metrics['calibration']}).", "",
             "| subset | n (malignant) | vs diameter alone: AUC, difference (95% CI) | "
             "vs measured size alone: AUC, difference (95% CI) |", "|---|---|---|---|"]
    for name in metrics["vs_diameter"]:
        block = metrics["vs_diameter"][name] or metrics["vs_measured_size"][name]
        counts = "n/a" if block is None else f"{block['n']} ({block['n_malignant']})"
        lines.append(f"| {name} | {counts} | {_difference_cell(metrics['vs_diameter'][name])} | "
                     f"{_difference_cell(metrics['vs_measured_size'][name])} |")
    cm = metrics["confusion_matrix"]
    lines += ["", f"At the validation Youden threshold {metrics['threshold']:.3f}: sensitivity "
              f"{metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f} "
              f"(TP {cm['tp']}, FN {cm['fn']}, FP {cm['fp']}, TN {cm['tn']}).", "", "## Characteristics", "",
              "| characteristic | n (present) | AUC | accuracy | baseline | baseline AUC | baseline accuracy |",
              "|---|---|---|---|---|---|---|"]
    for head, block in metrics["characteristics"].items():
        if head == "texture":
            continue
        lines.append(f"| {head} | {block['n']} ({block['n_present']}) | {block['auc']:.3f} | {block['accuracy']:.3f} | "
                     f"{block['baseline']} | {block['baseline_auc']:.3f} | {block['baseline_accuracy']:.3f} |")
    texture = metrics["characteristics"]["texture"]
    lines += ["", f"Texture ({', '.join(texture['classes'])}; n by class {texture['n_by_class']}): model accuracy "
              f"{texture['model']['accuracy']:.3f}, balanced {texture['model']['balanced_accuracy']:.3f}; HU rule "
              f"{texture['hu_rule']['accuracy']:.3f}, balanced {texture['hu_rule']['balanced_accuracy']:.3f}. "
              f"Confusion (rows truth, columns predicted): model {texture['model']['confusion']}, "
              f"HU rule {texture['hu_rule']['confusion']}.", "",
              f"![ROC]({roc_png}) (blue: measured scorer, orange: diameter alone, green: measured size alone)", "",
              f"![Reliability]({reliability_png})", ""]
    return "\n".join(lines)
