"""Evaluating and comparing emphysema models on a weak-label CSV, beside LAA-950 alone.

Every model is scored on the same cases: the part (``test``, ``val``) of the seeded
patient-level split of :mod:`lungai.data.emphysema_dataset`, or ``all`` cases of the CSV (an
external set). Metrics: ROC AUC with a 95 % percentile-bootstrap interval, and sensitivity,
specificity and F1 at the Youden threshold chosen on the *validation* part (the checkpoint's
``val_threshold``; on the evaluated cases themselves only for ``--split val``, or ``all`` for
LAA-950). LAA-950 of the lung mask is scored the same way as a sixth method, the densitometry
baseline a model must beat. :func:`comparison_markdown` lays the results out as the paper's
Table 1 (kernels, parameters, AUC, sensitivity, specificity, F1), with the paper's AUCs beside.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lungai.data.emphysema_dataset import (
    EmphysemaVolumeDataset,
    default_cache_dir,
    load_parts,
    predict_logits,
    prepare_case,
    split_fingerprint,
)
from lungai.data.weak_labels import WeakLabelCase, read_weak_labels
from lungai.evaluation.metrics import f1_score, roc_auc_ci, youden_threshold
from lungai.evaluation.report import markdown_table
from lungai.inference.device import resolve_device
from lungai.models.checkpoint import load_model
from lungai.models.summary import count_parameters
from lungai.preprocessing.emphysema_input import input_shape

#: The paper's test AUCs (weakly supervised emphysema detection with a ConvLSTM scanner).
PAPER_AUC = {"convlstm_scanner": 0.83, "mil_max": 0.69, "mil_mean": 0.70, "mil_product": 0.76, "cnn3d": 0.77}
LAA_NAME = "laa950"
_KERNELS = {"ConvLSTMScanner": "3x3 conv (2D) + 3x3 ConvLSTM", "MILCNN2d": "3x3 conv (2D)", "CNN3d": "3x3x3 conv"}


@dataclass(frozen=True)
class EmphysemaEvalConfig:
    """What to evaluate.

    Attributes:
        weights: checkpoint folders (config.json + model.safetensors, metrics.json when trained here).
        data: the weak-label CSV.
        split: ``test``, ``val`` or ``all``.
        split_seed: the split's seed (the one the models were trained with).
        device: where the models run.
        cache_dir: prepared-volume cache (default: beside the CSV).
        n_bootstrap: bootstrap resamples of the AUC interval.
    """

    weights: tuple[Path, ...]
    data: Path
    split: str = "test"
    split_seed: int = 0
    device: str = "cpu"
    cache_dir: Path | None = None
    n_bootstrap: int = 2000


def _cases(config: EmphysemaEvalConfig) -> tuple[list[WeakLabelCase], list[WeakLabelCase], str | None]:
    """(evaluated cases, validation cases for thresholds, split fingerprint)."""
    if config.split not in ("test", "val", "all"):
        raise ValueError(f"unknown split {config.split!r}; use test, val or all")
    if config.split == "all":
        cases = read_weak_labels(config.data)
        return cases, cases, None
    parts = load_parts(config.data, config.split_seed)
    return parts[config.split], parts["val"], split_fingerprint(parts)


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, n_bootstrap: int = 2000
                   ) -> dict[str, float]:
    """AUC with its 95 % CI, and sensitivity, specificity and F1 at ``threshold`` (positive: score >= it)."""
    ci = roc_auc_ci(scores, labels, n_bootstrap=n_bootstrap)
    predicted = scores >= threshold
    positive = labels > 0
    return {"auc": ci.auc, "auc_ci_low": ci.low, "auc_ci_high": ci.high, "threshold": float(threshold),
            "sensitivity": float(np.mean(predicted[positive])), "specificity": float(np.mean(~predicted[~positive])),
            "f1": f1_score(predicted, positive)}


def _probabilities(model: nn.Module, cases: Sequence[WeakLabelCase], config: EmphysemaEvalConfig,
                   device: str) -> np.ndarray:
    shape = input_shape(model.config)
    cache = config.cache_dir or default_cache_dir(config.data)
    dataset = EmphysemaVolumeDataset([prepare_case(c, shape, cache) for c in cases], [c.label for c in cases])
    return 1.0 / (1.0 + np.exp(-predict_logits(model, dataset, device)))


def _checkpoint_metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _laa(cases: Sequence[WeakLabelCase], config: EmphysemaEvalConfig, shape: tuple[int, int, int]) -> np.ndarray:
    """LAA-950 of each case's lung mask at native resolution (the cached preparation of ``shape`` holds it)."""
    cache = config.cache_dir or default_cache_dir(config.data)
    return np.array([prepare_case(c, shape, cache).laa950_percent for c in cases])


def evaluate_models(config: EmphysemaEvalConfig) -> dict[str, Any]:
    """Score every checkpoint and LAA-950 on the same cases.

    Returns:
        ``{"split", "split_fingerprint", "n", "n_positive", "methods": [...], "cases": [...]}``;
        each method has its metrics, ``kernels``, ``parameters`` and ``paper_auc``.

    Raises:
        ValueError: one class only among the cases, a bad split name, or a checkpoint trained
            on another split than the one evaluated.
        LungAIError: a checkpoint or scan cannot be read.
    """
    device = resolve_device(config.device)
    cases, val_cases, fingerprint = _cases(config)
    labels = np.array([int(c.label > 0) for c in cases])
    val_labels = np.array([int(c.label > 0) for c in val_cases])
    if labels.min() == labels.max() or val_labels.min() == val_labels.max():
        raise ValueError("the evaluated (and validation) cases need both labels")
    methods, scores_by_name = [], {}
    shape = (35, 128, 128)
    for folder in config.weights:
        trained = _checkpoint_metrics(folder)
        if fingerprint and trained.get("split_fingerprint") not in (None, fingerprint):
            raise ValueError(f"{folder} was trained on another split of {config.data} (or another CSV); "
                             "evaluate it with the CSV and --split-seed it was trained with")
        model = load_model(folder, device)
        scores = _probabilities(model, cases, config, device)
        if config.split != "val" and "val_threshold" in trained:
            threshold, source = float(trained["val_threshold"]), "val"
        else:
            threshold, source = youden_threshold(scores, labels), "evaluated cases"
        shape = input_shape(model.config)
        name = str(trained.get("model") or folder.name)
        methods.append({"name": name, "run": folder.name, "weights": str(folder),
                        "kernels": _KERNELS.get(type(model).__name__, "?"),
                        "parameters": count_parameters(model), "paper_auc": PAPER_AUC.get(name),
                        "threshold_from": source, **binary_metrics(scores, labels, threshold, config.n_bootstrap)})
        scores_by_name[name if name not in scores_by_name else f"{name}:{folder.name}"] = scores
    laa = _laa(cases, config, shape)
    laa_threshold = youden_threshold(_laa(val_cases, config, shape), val_labels)
    methods.append({"name": LAA_NAME, "run": LAA_NAME, "weights": None, "kernels": "-", "parameters": 0,
                    "paper_auc": None, "threshold_from": "evaluated cases" if config.split in ("val", "all") else "val",
                    **binary_metrics(laa, labels, laa_threshold, config.n_bootstrap)})
    rows = [{"case_id": c.case_id, "patient_id": c.patient_id, "label": int(y), LAA_NAME: float(v),
             **{name: float(s[i]) for name, s in scores_by_name.items()}}
            for i, (c, y, v) in enumerate(zip(cases, labels, laa))]
    return {"task": "emphysema", "data": str(config.data), "split": config.split, "split_seed": config.split_seed,
            "split_fingerprint": fingerprint, "n": int(labels.size), "n_positive": int(labels.sum()),
            "methods": methods, "cases": rows}


_NAMES = {"convlstm_scanner": "ConvLSTM scanner", "mil_max": "MIL max pooling", "mil_mean": "MIL mean pooling",
          "mil_product": "MIL product pooling", "cnn3d": "3D CNN", LAA_NAME: "LAA-950 alone (densitometry)"}


def comparison_markdown(result: dict[str, Any]) -> str:
    """The paper's Table 1 layout: method, kernels, parameters, AUC (95 % CI), sens., spec., F1, paper AUC."""
    rows = []
    for m in result["methods"]:
        label = _NAMES.get(m["name"], m["name"])
        if m.get("run") not in (None, m["name"]):
            label += f" (`{m['run']}`)"
        rows.append([label, m["kernels"], f"{m['parameters']:,}" if m["parameters"] else "-",
                     f"{m['auc']:.3f} ({m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f})", m["sensitivity"],
                     m["specificity"], m["f1"], "-" if m["paper_auc"] is None else f"{m['paper_auc']:.2f}"])
    header = ["method", "kernels", "parameters", "AUC (95% CI)", "sensitivity", "specificity", "F1", "paper AUC"]
    return (f"{result['split']} split of {result['data']}: {result['n']} volumes, {result['n_positive']} positive. "
            "Sensitivity, specificity and F1 at the Youden threshold of the validation split.\n\n"
            + markdown_table(rows, header) + "\n")
