"""Evaluation reports: ``metrics.json``, a markdown report and a ROC curve PNG.

The PNG is drawn with numpy and written with imageio (installed with scikit-image): axes,
the chance diagonal and one curve per scorer, no text; the markdown caption names the colours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from lungai.evaluation.metrics import ROCCurve

COLOURS = {"blue": (31, 119, 180), "orange": (255, 127, 14), "green": (44, 160, 44), "red": (214, 39, 40)}
_SIZE = 480
_MARGIN = 40


def write_json(metrics: Mapping[str, Any], path: Path) -> Path:
    """Write metrics as indented JSON."""
    path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return path


def _plot_line(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int],
               width: int = 2) -> None:
    """Draw a polyline given in [0, 1] plot coordinates, densely sampled between vertices."""
    span = _SIZE - 2 * _MARGIN
    for (x0, y0), (x1, y1) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
        steps = int(max(abs(x1 - x0), abs(y1 - y0)) * span) + 2
        t = np.linspace(0.0, 1.0, steps)
        cols = np.round(_MARGIN + (x0 + (x1 - x0) * t) * span).astype(int)
        rows = np.round(_SIZE - _MARGIN - (y0 + (y1 - y0) * t) * span).astype(int)
        for dr in range(-(width // 2), width - width // 2):
            for dc in range(-(width // 2), width - width // 2):
                canvas[np.clip(rows + dr, 0, _SIZE - 1), np.clip(cols + dc, 0, _SIZE - 1)] = colour


def roc_png(curves: Sequence[tuple[ROCCurve, str]], path: Path) -> Path:
    """Draw ROC curves (false-positive rate right, true-positive rate up) into a PNG.

    Args:
        curves: ``(curve, colour name of COLOURS)`` pairs.
        path: the PNG to write.

    Returns:
        The path.
    """
    canvas = np.full((_SIZE, _SIZE, 3), 255, np.uint8)
    grey = (200, 200, 200)
    for tick in np.linspace(0, 1, 6):
        _plot_line(canvas, np.array([tick, tick]), np.array([0.0, 1.0]), grey, 1)
        _plot_line(canvas, np.array([0.0, 1.0]), np.array([tick, tick]), grey, 1)
    _plot_line(canvas, np.array([0.0, 1.0]), np.array([0.0, 1.0]), (128, 128, 128), 1)
    _plot_line(canvas, np.array([0.0, 1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0, 0.0]), (0, 0, 0), 2)
    for curve, colour in curves:
        _plot_line(canvas, curve.fpr, curve.tpr, COLOURS[colour], 3)
    iio.imwrite(path, canvas)
    return path


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A markdown table; floats with 3 decimals."""
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def malignancy_markdown(metrics: Mapping[str, Any], png_name: str) -> str:
    """The malignancy report: AUC with CIs, the diameter baseline, the 8-20 mm band, the operating point."""
    diff = metrics["auc_difference"]
    cm = metrics["confusion_matrix"]
    rows = [
        ["model (" + " + ".join(metrics["models"]) + ")", metrics["auc"],
         f"{metrics['auc_ci_low']:.3f}-{metrics['auc_ci_high']:.3f}", _fmt(metrics["auc_8_20mm"])],
        ["diameter-only logistic regression", metrics["auc_diameter_baseline"],
         f"{metrics['auc_diameter_baseline_ci_low']:.3f}-{metrics['auc_diameter_baseline_ci_high']:.3f}",
         _fmt(metrics["auc_8_20mm_diameter_baseline"])],
    ]
    members = "; ".join(f"{name} {auc:.3f}" for name, auc in metrics["member_auc"].items())
    return "\n".join([
        f"# Malignancy evaluation ({metrics['split']} split)", "",
        f"{metrics['n_cases']} nodules, {metrics['n_malignant']} malignant. {metrics['label_note']}.", "",
        markdown_table(rows, ["scorer", "ROC AUC", "95% bootstrap CI", f"AUC 8-20 mm (n={metrics['n_8_20mm']})"]),
        "",
        f"AUC difference model - diameter baseline (paired bootstrap): {diff['difference']:+.3f} "
        f"(95% CI {diff['low']:+.3f} to {diff['high']:+.3f}; model not better in "
        f"{100 * diff['p_not_better']:.1f}% of resamples).", "",
        f"Member AUCs: {members}.", "",
        f"At the validation-chosen threshold {metrics['threshold']:.3f} ({metrics['threshold_source']}): "
        f"sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}.", "",
        markdown_table([["malignant", cm["tp"], cm["fn"]], ["benign", cm["fp"], cm["tn"]]],
                       ["truth \\ predicted", "malignant", "benign"]), "",
        f"![ROC curve]({png_name}) (blue: model, orange: diameter baseline; grid every 0.2).", "",
    ])


def segmentation_markdown(metrics: Mapping[str, Any]) -> str:
    """The segmentation report: Dice overall and by size, precision and recall, model and baseline."""
    keys = ["dice", "dice_median", "dice_lt10mm", "dice_ge10mm", "precision", "recall"]
    rows = [[metrics["model"]] + [_fmt(metrics[k]) for k in keys],
            ["threshold -400 HU + component"] + [_fmt(metrics["baseline_" + k]) for k in keys]]
    n_small = metrics["n_lt10mm"]
    return "\n".join([
        f"# Nodule segmentation evaluation ({metrics['split']} split)", "",
        f"{metrics['n_cases']} nodules ({n_small} < 10 mm, {metrics['n_cases'] - n_small} >= 10 mm); "
        "metrics on each VOI's native grid, mean over nodules.", "",
        markdown_table(rows, ["method", "Dice mean", "Dice median", "Dice < 10 mm", "Dice >= 10 mm",
                              "precision", "recall"]), "",
        *_inference_lines(metrics),
        *_long_axis_lines(metrics),
    ])


def _inference_lines(metrics: Mapping[str, Any]) -> list[str]:
    """How the model was run: threshold, mirroring, tiling, scales (older reports lack some keys)."""
    scales = ", ".join(f"{s:g}" for s in metrics.get("scales", [1.0]))
    tiling = "off" if not metrics.get("tile", True) else (
        "on" if metrics.get("tile_mirror", True) or not metrics.get("mirror", True) else "on (tiles not mirrored)")
    return [f"Mask: probability >= {metrics['threshold']:.2f}, largest component; mirroring "
            f"{'on' if metrics.get('mirror', True) else 'off'}, tiling {tiling}; "
            f"ROI spacing factors averaged: {scales}.", ""]


def _long_axis_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The long-axis agreement sentence (reports written before it existed have no such keys)."""
    if "long_axis_missed" not in metrics:
        return []
    if metrics.get("long_axis_error_mm") is None:
        return [f"No nodule has a mask, so no long axis was measured ({metrics['long_axis_missed']} missed).", ""]
    large = ("" if metrics.get("long_axis_error_ge10mm_mm") is None else
             f"; nodules >= 10 mm: mean error {metrics['long_axis_error_ge10mm_mm']:+.2f} mm, "
             f"mean absolute error {metrics['long_axis_abs_error_ge10mm_mm']:.2f} mm")
    return [f"Axial long axis of the model's mask minus the reader consensus's: mean error "
            f"{metrics['long_axis_error_mm']:+.2f} mm, mean absolute error {metrics['long_axis_abs_error_mm']:.2f} mm"
            f"{large}; over the nodules with a mask ({metrics['long_axis_missed']} without).", ""]
