"""Nodule segmentation evaluation on the VOIs' native grids, with the threshold baseline.

Each VOI is segmented the way ``lungai run`` segments a nodule
(:func:`lungai.inference.voi_segmentation.predict_voi_probability`: the centred ROI, mirrored,
tiled when the nodule is cut by the ROI; both can be switched off; averaged over the
checkpoint's ``inference.scales`` when it records some), mapped back onto the VOI's own grid,
thresholded at the checkpoint's validation-chosen threshold (``config.json``
``inference.threshold``, written by the trainer or ``lungai tune``; 0.5 for a checkpoint
without one) and reduced to its largest connected component; Dice, precision and recall are computed there against the
reader-consensus mask, so resampling losses count against the model. The long axis of the
predicted mask (:func:`lungai.preprocessing.measurements.axial_diameters`, the measurement
``lungai run`` reports) is compared with that of the reader-consensus mask: the mean signed
error (the bias of the outline) and the mean absolute error, over the nodules with a predicted
mask (the others are counted as missed). The threshold + connected-component
baseline (:func:`lungai.evaluation.baselines.threshold_segmentation`) is scored on the same cases.
Size groups use the csv's ``diameter_mm`` (an analysis variable, never a model input).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungai.evaluation.baselines import threshold_segmentation
from lungai.evaluation.cases import evaluation_cases
from lungai.evaluation.metrics import dice, precision, recall
from lungai.evaluation.predictions import load_nodule_model
from lungai.inference.voi_segmentation import VoiInference, predict_voi_probability, recorded_inference, with_overrides
from lungai.models.checkpoint import read_header
from lungai.preprocessing.measurements import axial_diameters, largest_component
from lungai.preprocessing.roi import RoiSpec, roi_spec, roi_to_native

logger = logging.getLogger(__name__)

SIZE_SPLIT_MM = 10.0
DEFAULT_THRESHOLD = 0.5
THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.1 ... 0.9, the validation search grid


@dataclass(frozen=True)
class SegmentationEvalConfig:
    """One segmentation evaluation.

    Attributes:
        weights: the checkpoint folder.
        data: the folder to evaluate.
        split: ``test``, ``val`` or ``all``.
        threshold: probability threshold of the mask; ``None`` uses the checkpoint's
            (:func:`checkpoint_inference`).
        device: where the model runs.
        min_diameter_mm: evaluate only nodules with at least this ``diameter_mm`` (case
            selection only, e.g. the tumour model's large nodules); ``None`` for all.
        mirror: test-time mirroring (:class:`~lungai.inference.voi_segmentation.VoiInference`).
        tile: tiling of nodules cut by the ROI.
        scales: ROI spacing factors to average; ``None`` uses the checkpoint's.
        tile_mirror: mirror the tiles too; ``None`` uses the checkpoint's.
    """

    weights: Path
    data: Path
    split: str = "test"
    threshold: float | None = None
    device: str = "cpu"
    min_diameter_mm: float | None = None
    mirror: bool = True
    tile: bool = True
    scales: tuple[float, ...] | None = None
    tile_mirror: bool | None = None


def checkpoint_inference(folder: Path) -> VoiInference:
    """How a segmentation checkpoint was validated: its threshold, scales and tile mirroring.

    The trainer writes the validation-chosen threshold into ``config.json`` as
    ``inference.threshold`` (``lungai tune`` may rewrite it with ``inference.scales``);
    checkpoints without one get :data:`DEFAULT_THRESHOLD` and the trained spacing alone.
    """
    return recorded_inference(read_header(folder).get("inference") or {}, DEFAULT_THRESHOLD)


def to_native(probabilities: list[np.ndarray], natives: list[tuple[tuple[int, int, int], tuple[float, float, float]]],
              spec: RoiSpec) -> list[np.ndarray]:
    """Map ROI probabilities onto the VOIs' native grids (``natives``: shape and spacing per VOI)."""
    return [roi_to_native(prob, shape, spacing, spec) for prob, (shape, spacing) in zip(probabilities, natives)]


def mean_dice(native_probabilities: list[np.ndarray], masks: list[np.ndarray], threshold: float) -> float:
    """Mean Dice over VOIs of the thresholded, largest-component predictions on the native grids."""
    return float(np.mean([dice(largest_component(prob >= threshold), mask)
                          for prob, mask in zip(native_probabilities, masks)]))


def choose_threshold(native_probabilities: list[np.ndarray], masks: list[np.ndarray],
                     thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[float, float]:
    """The threshold of ``thresholds`` with the best mean Dice (use validation cases only).

    Returns:
        ``(threshold, its mean Dice)``; ties go to the threshold nearest 0.5.
    """
    scored = [(mean_dice(native_probabilities, masks, t), -abs(t - DEFAULT_THRESHOLD), t) for t in thresholds]
    best = max(scored)
    return best[2], best[0]


def long_axis_mm(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """The axial long axis of a mask in mm; 0 for an empty mask (a missed nodule measures nothing)."""
    return axial_diameters(mask, spacing_zyx).long_axis_mm if mask.any() else 0.0


def long_axis_summary(rows: list[dict[str, Any]]) -> dict[str, float | int | None]:
    """Mean signed and absolute long-axis errors over the nodules the model found (any mask),
    overall and >= 10 mm, and the number it missed (no mask, nothing to measure)."""
    found = [r for r in rows if r["long_axis_mm"] > 0]
    if not found:
        return {"long_axis_error_mm": None, "long_axis_abs_error_mm": None, "long_axis_error_ge10mm_mm": None,
                "long_axis_abs_error_ge10mm_mm": None, "long_axis_missed": len(rows)}
    errors = np.array([r["long_axis_mm"] - r["reference_long_axis_mm"] for r in found])
    large = np.array([r["diameter_mm"] >= SIZE_SPLIT_MM for r in found], bool)
    return {"long_axis_missed": len(rows) - len(found),
            "long_axis_error_mm": float(errors.mean()), "long_axis_abs_error_mm": float(np.abs(errors).mean()),
            "long_axis_error_ge10mm_mm": float(errors[large].mean()) if large.any() else None,
            "long_axis_abs_error_ge10mm_mm": float(np.abs(errors[large]).mean()) if large.any() else None}


def _summary(rows: list[dict[str, float]], prefix: str) -> dict[str, float | None]:
    def mean(key: str, keep: np.ndarray | None = None) -> float | None:
        values = np.array([r[key] for r in rows])
        values = values if keep is None else values[keep]
        return float(values.mean()) if values.size else None

    diameters = np.array([r["diameter_mm"] for r in rows])
    small, large = diameters < SIZE_SPLIT_MM, diameters >= SIZE_SPLIT_MM
    return {
        f"{prefix}dice": mean("dice"), f"{prefix}dice_median": float(np.median([r["dice"] for r in rows])),
        f"{prefix}dice_lt10mm": mean("dice", small), f"{prefix}dice_ge10mm": mean("dice", large),
        f"{prefix}precision": mean("precision"), f"{prefix}recall": mean("recall"),
    }


def evaluate_segmentation(config: SegmentationEvalConfig) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Score a segmentation model and the threshold baseline on the evaluation cases.

    Returns:
        ``(metrics, per-case rows)``; metrics have ``dice``, ``dice_median``, ``dice_lt10mm``,
        ``dice_ge10mm``, ``precision``, ``recall`` and the same with ``baseline_`` in front, and the
        model's long-axis errors (``long_axis_error_mm``, ``long_axis_abs_error_mm``, and both
        for nodules >= 10 mm), predicted minus reader consensus, with ``long_axis_missed``.
    """
    cases = evaluation_cases(config.data, config.split)
    if config.min_diameter_mm is not None:
        cases = [case for case in cases if case.diameter_mm >= config.min_diameter_mm]
        if not cases:
            raise ValueError(f"no {config.split} cases with diameter_mm >= {config.min_diameter_mm} in {config.data}")
    name, model = load_nodule_model(config.weights, config.device)
    spec = roi_spec(name)
    inference = with_overrides(checkpoint_inference(config.weights), threshold=config.threshold,
                               mirror=config.mirror, tile=config.tile, scales=config.scales,
                               tile_mirror=config.tile_mirror)
    threshold = inference.threshold
    rows: list[dict[str, Any]] = []
    for case in cases:
        sample = case.load()
        native = predict_voi_probability(model, sample.image, sample.spacing_zyx, spec, inference)
        predicted = largest_component(native >= threshold)
        baseline = threshold_segmentation(sample.image)
        rows.append({"case_id": case.case_id, "diameter_mm": case.diameter_mm,
                     "dice": dice(predicted, sample.mask), "precision": precision(predicted, sample.mask),
                     "recall": recall(predicted, sample.mask),
                     "long_axis_mm": long_axis_mm(predicted, sample.spacing_zyx),
                     "reference_long_axis_mm": long_axis_mm(sample.mask, sample.spacing_zyx),
                     "baseline_dice": dice(baseline, sample.mask),
                     "baseline_precision": precision(baseline, sample.mask),
                     "baseline_recall": recall(baseline, sample.mask)})
    metrics: dict[str, Any] = {"task": "nodule-seg", "split": config.split, "model": name,
                               "weights": str(config.weights), "n_cases": len(rows),
                               "n_lt10mm": int(sum(r["diameter_mm"] < SIZE_SPLIT_MM for r in rows)),
                               "threshold": threshold, "min_diameter_mm": config.min_diameter_mm,
                               "mirror": inference.mirror, "tile": inference.tile, "tile_mirror": inference.tile_mirror,
                               "scales": list(inference.scales),
                               **_summary(rows, ""), **long_axis_summary(rows)}
    baseline_rows = [{"diameter_mm": r["diameter_mm"], "dice": r["baseline_dice"], "precision": r["baseline_precision"],
                      "recall": r["baseline_recall"]} for r in rows]
    metrics.update(_summary(baseline_rows, "baseline_"))
    logger.info("nodule-seg %s: Dice %.3f (threshold baseline %.3f)", config.split, metrics["dice"],
                metrics["baseline_dice"])
    return metrics, rows
