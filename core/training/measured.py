"""Fitting the measured scorer: one logistic regression per head, each form chosen on the validation split.

``lungai train malignancy --model measured_nodule``:

1. Features of every training and validation VOI from LungAI's own segmentation
   (:func:`lungai.data.voi_features.voi_features`, cached); labels: malignancy under the label
   rule (radiologists' suspicion, not pathology) and the characteristics of
   :mod:`lungai.data.lidc_characteristics` (reader ratings: labels only).
2. Per head, an L2-regularised logistic regression (:func:`lungai.evaluation.logistic.fit_logistic`,
   penalty :attr:`MeasuredTrainConfig.penalty`) is fitted on the training split for each feature
   set of :data:`FEATURE_SETS`; the set with the best validation score is kept (binary heads: ROC
   AUC; texture: mean one-versus-rest AUC). The test split is never read.
3. The malignancy head is recalibrated by Platt scaling on its validation probabilities.
4. Decisions fixed on validation, recorded in ``config.json`` ``inference``: the calcification
   probability above which Lung-RADS category 1 applies (the lowest threshold keeping the
   validation specificity at least :attr:`MeasuredTrainConfig.calcified_specificity`, and at least
   :data:`PRESENT_FROM`: calcification must be the more probable answer), and whether
   the texture head replaces the HU rule for the Lung-RADS type (only if its validation balanced
   accuracy is higher than the rule's).
5. The heads are written as one :class:`lungai.models.measured_nodule.MeasuredNodule` checkpoint
   (``config.json`` + ``model.safetensors``) with ``selection.json``, every validation number.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lungai.data.lidc_characteristics import CHARACTERISTICS
from lungai.data.lidc_vois import VOICase
from lungai.data.voi_features import voi_features
from lungai.evaluation.cases import reference_cases
from lungai.evaluation.logistic import LogisticFit, fit_logistic, platt_scaling
from lungai.evaluation.measured_eval import balanced_accuracy, texture_hu_rule
from lungai.evaluation.metrics import roc_auc
from lungai.models.checkpoint import save_model, write_inference_settings
from lungai.models.measured_nodule import MeasuredNodule, MeasuredNoduleConfig, head_rows
from lungai.preprocessing.nodule_features import FEATURE_NAMES

logger = logging.getLogger(__name__)

MODEL_NAME = "measured_nodule"
SIZE = ("log_volume", "long_axis", "short_axis")
HU = ("mean_hu", "hu_sd", "hu_p10", "hu_p50", "hu_p95", "calcified_fraction", "solid_fraction", "fat_fraction")
SHAPE = ("sphericity", "solidity", "elongation", "flatness", "radial_cv", "margin_contrast", "margin_gradient")
#: The candidate feature sets of every head.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "size": SIZE, "HU": HU, "size + HU": SIZE + HU, "size + shape": SIZE + SHAPE,
    "size + HU + shape": SIZE + HU + SHAPE,
}
#: A characteristic's probability from which it is reported as present.
PRESENT_FROM = 0.5


@dataclass(frozen=True)
class MeasuredTrainConfig:
    """One fit of the measured scorer.

    Attributes:
        data: the ``lidc_vois`` folder (its training and validation splits are used).
        out: the run folder.
        label_rule: the malignancy label rule.
        penalty: L2 penalty of every regression (on standardised features).
        calcified_specificity: validation specificity the Lung-RADS calcification threshold keeps.
        cache_dir: the feature cache folder (``None``: :func:`lungai.data.voi_features.cache_path`'s default).
    """

    data: Path
    out: Path
    label_rule: str = "ge2_readers_gt3"
    penalty: float = 1.0
    calcified_specificity: float = 0.98
    cache_dir: Path | None = None


def head_labels(cases: list[VOICase], head: str, rule: str) -> np.ndarray:
    """Labels of ``head`` per case (-1 where the case has none)."""
    if head == "malignancy":
        values = [c.label(rule) for c in cases]
    else:
        label, _ = CHARACTERISTICS[head]
        values = [label(c.analysis) for c in cases]
    return np.array([-1 if v is None else v for v in values], int)


def head_classes(head: str) -> int:
    """Classes of a head."""
    return 2 if head == "malignancy" else CHARACTERISTICS[head][1]


def validation_score(probability: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC (binary) or mean one-versus-rest AUC (several classes)."""
    if probability.ndim == 1:
        return roc_auc(probability, y)
    return float(np.mean([roc_auc(probability[:, k], (y == k).astype(int)) for k in range(probability.shape[1])
                          if 0 < (y == k).sum() < len(y)]))


def columns(names: tuple[str, ...]) -> list[int]:
    """Indices of feature ``names`` in :data:`FEATURE_NAMES`."""
    return [FEATURE_NAMES.index(n) for n in names]


def _select(head: str, x: dict[str, np.ndarray], y: dict[str, np.ndarray],
            penalty: float) -> tuple[str, LogisticFit, dict[str, float]]:
    """The feature set with the best validation score, its fit, and every candidate's score."""
    keep = {p: y[p] >= 0 for p in y}
    scores, fits = {}, {}
    for name, names in FEATURE_SETS.items():
        fit = fit_logistic(x["train"][keep["train"]][:, columns(names)], y["train"][keep["train"]],
                           head_classes(head), penalty)
        probability = fit.predict(x["val"][keep["val"]][:, columns(names)])
        scores[name], fits[name] = validation_score(probability, y["val"][keep["val"]]), fit
    best = max(scores, key=lambda name: scores[name])
    logger.info("%s: %s (validation %s)", head, best, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return best, fits[best], scores


def _place(model: MeasuredNodule, rows: slice, fit: LogisticFit, names: tuple[str, ...]) -> None:
    """Write a fit on a feature subset into the model's rows, re-expressed on the model's standardisation."""
    index = columns(names)
    mean, scale = model.mean.detach().numpy(), model.scale.detach().numpy()
    weight = np.zeros((rows.stop - rows.start, len(FEATURE_NAMES)))
    # fit: ((x - m2) / s2) @ W.T + b, x = mean + scale * z  ->  z @ (W * scale / s2).T + b + ((mean - m2) / s2) @ W.T
    weight[:, index] = fit.weight * scale[index] / fit.scale
    bias = fit.bias + ((mean[index] - fit.mean) / fit.scale) @ fit.weight.T
    with torch.no_grad():
        model.weight[rows] = torch.as_tensor(weight, dtype=torch.float32)
        model.bias[rows] = torch.as_tensor(bias, dtype=torch.float32)


def _calcified_threshold(probability: np.ndarray, y: np.ndarray, specificity: float) -> float:
    """The lowest probability threshold whose validation specificity is at least ``specificity``, and
    never below :data:`PRESENT_FROM` (category 1 needs calcification to be the more probable answer)."""
    negatives = np.sort(probability[y == 0])
    allowed = int(np.floor((1 - specificity) * negatives.size))
    strict = float(negatives[negatives.size - allowed - 1]) + 1e-6 if negatives.size else PRESENT_FROM
    return max(strict, PRESENT_FROM)


def train_measured(config: MeasuredTrainConfig) -> dict[str, Any]:
    """Fit, choose and save the measured scorer (see the module docstring); returns the selection report."""
    cases = {p: reference_cases(config.data, p) for p in ("train", "val")}
    x = {p: voi_features(items, config.cache_dir) for p, items in cases.items()}
    heads = ("malignancy", *CHARACTERISTICS)
    chosen = {}
    report: dict[str, Any] = {"model": MODEL_NAME, "label_rule": config.label_rule, "penalty": config.penalty,
                              "n_train": len(cases["train"]), "n_val": len(cases["val"]), "heads": {}}
    for head in heads:
        y = {p: head_labels(items, head, config.label_rule) for p, items in cases.items()}
        name, fit, scores = _select(head, x, y, config.penalty)
        chosen[head] = (name, fit, y)
        report["heads"][head] = {"feature_set": name, "validation_scores": scores,
                                 "n_val_positive_by_class": np.bincount(y["val"][y["val"] >= 0]).tolist()}
    model = MeasuredNodule(MeasuredNoduleConfig(features=FEATURE_NAMES, heads=heads,
                                                classes=tuple(head_classes(h) for h in heads),
                                                feature_sets=tuple(chosen[h][0] for h in heads)))
    with torch.no_grad():
        model.mean.copy_(torch.as_tensor(x["train"].mean(0), dtype=torch.float32))
        model.scale.copy_(torch.as_tensor(np.where(x["train"].std(0) > 0, x["train"].std(0), 1.0), dtype=torch.float32))
    rows = head_rows(model.config)
    for head, (name, fit, _) in chosen.items():
        _place(model, rows[head], fit, FEATURE_SETS[name])
    inference = _validation_decisions(model, x["val"], chosen, config, report)
    config.out.mkdir(parents=True, exist_ok=True)
    save_model(model, config.out)
    write_inference_settings(config.out, inference)
    (config.out / "selection.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    logger.info("saved %s in %s", MODEL_NAME, config.out)
    return report


def _validation_decisions(model: MeasuredNodule, x_val: np.ndarray, chosen: dict[str, Any],
                          config: MeasuredTrainConfig, report: dict[str, Any]) -> dict[str, Any]:
    """Platt scaling of the malignancy head and the Lung-RADS decisions, all on the validation split."""
    row = head_rows(model.config)["malignancy"].start
    y_val = chosen["malignancy"][2]["val"]
    with torch.no_grad():
        before = model.probabilities(torch.as_tensor(x_val, dtype=torch.float32))["malignancy"].numpy()
    a, b = platt_scaling(before, y_val)
    with torch.no_grad():
        model.calibration[row] = torch.tensor([a, b])
        heads = model.probabilities(torch.as_tensor(x_val, dtype=torch.float32))
    probabilities = {k: v.numpy() for k, v in heads.items()}
    report["malignancy_platt"] = {"a": a, "b": b}
    calcified = chosen["calcification"][2]["val"]
    threshold = _calcified_threshold(probabilities["calcification"], calcified, config.calcified_specificity)
    texture_y = chosen["texture"][2]["val"]
    known = texture_y >= 0
    model_bacc = balanced_accuracy(probabilities["texture"][known].argmax(1), texture_y[known])
    rule = texture_hu_rule(x_val[known, FEATURE_NAMES.index("solid_fraction")])
    rule_bacc = balanced_accuracy(rule, texture_y[known])
    report["lung_rads"] = {"calcified_threshold": threshold, "texture_balanced_accuracy_model": model_bacc,
                           "texture_balanced_accuracy_hu_rule": rule_bacc}
    return {"features": "lungai.preprocessing.nodule_features", "present_from": PRESENT_FROM,
            "calcified_category1_from": round(threshold, 6), "texture_for_lung_rads": bool(model_bacc > rule_bacc),
            "malignancy_calibration": "Platt scaling on the validation split",
            "chosen_on": "validation split of core/data/splits/lidc_vois_split.csv"}
