"""Segmentation evaluation: the threshold baseline and the native-grid report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_data import require

from lungai.evaluation import report
from lungai.evaluation.baselines import threshold_segmentation
from lungai.evaluation.metrics import dice
from lungai.evaluation.segmentation_eval import (
    SegmentationEvalConfig,
    checkpoint_inference,
    choose_threshold,
    evaluate_segmentation,
    largest_component,
    long_axis_mm,
    long_axis_summary,
    mean_dice,
)
from lungai.models.checkpoint import save_model, write_inference_settings
from lungai.models.registry import build_model
from lungai.models.resunet3d import ResUNet3dConfig


def test_threshold_baseline_keeps_the_central_component() -> None:
    image = np.full((9, 40, 40), -850.0, np.float32)
    image[3:6, 17:23, 17:23] = 30.0
    image[:, 0:3, :] = 100.0  # chest wall, not connected to the nodule
    mask = threshold_segmentation(image)
    assert mask[4, 20, 20] == 1 and mask[:, 0:3, :].sum() == 0
    assert dice(mask, image > -400) < 1 and mask.sum() == 3 * 6 * 6


def test_threshold_baseline_falls_back_to_the_nearest_component() -> None:
    image = np.full((5, 20, 20), -850.0, np.float32)
    image[2, 2:4, 2:4] = 50.0
    assert threshold_segmentation(image).sum() == 4


def test_largest_component() -> None:
    mask = np.zeros((3, 10, 10), np.uint8)
    mask[1, 1:3, 1:3] = 1
    mask[1, 5:9, 5:9] = 1
    assert largest_component(mask).sum() == 16


@pytest.mark.slow
def test_evaluation_on_the_validation_split(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    save_model(build_model("resunet3d", ResUNet3dConfig(filters=(2, 4, 8, 16), bottom_filters=8)), tmp_path / "w")
    metrics, rows = evaluate_segmentation(SegmentationEvalConfig(tmp_path / "w", vois, "val"))
    assert len(rows) == metrics["n_cases"] > 100 and metrics["threshold"] == 0.5 and metrics["scales"] == [1.0]
    for key in ("dice", "dice_median", "dice_lt10mm", "dice_ge10mm", "precision", "recall", "baseline_dice"):
        assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0
    assert 0.3 < metrics["baseline_dice"] < 0.8
    assert all(r["reference_long_axis_mm"] > 0 for r in rows)
    assert metrics["long_axis_missed"] + sum(r["long_axis_mm"] > 0 for r in rows) == len(rows)
    assert "Dice >= 10 mm" in report.segmentation_markdown(metrics)
    assert "long axis" in report.segmentation_markdown(metrics)


def test_long_axis_of_a_mask_and_of_a_missed_nodule() -> None:
    mask = np.zeros((3, 20, 20), bool)
    mask[1, 5:9, 3:13] = True  # 4 x 10 pixels of 0.5 mm: its diagonal is about 5.4 mm
    assert 5.0 < long_axis_mm(mask, (2.0, 0.5, 0.5)) < 6.0
    assert long_axis_mm(np.zeros_like(mask), (2.0, 0.5, 0.5)) == 0.0


def test_long_axis_errors_leave_out_and_count_the_missed_nodules() -> None:
    rows = [{"diameter_mm": 12.0, "long_axis_mm": 10.0, "reference_long_axis_mm": 12.0},
            {"diameter_mm": 5.0, "long_axis_mm": 5.0, "reference_long_axis_mm": 4.0},
            {"diameter_mm": 8.0, "long_axis_mm": 0.0, "reference_long_axis_mm": 8.0}]
    summary = long_axis_summary(rows)
    assert summary["long_axis_missed"] == 1
    assert (summary["long_axis_error_mm"] == pytest.approx(-0.5)
            and summary["long_axis_abs_error_mm"] == pytest.approx(1.5))
    assert summary["long_axis_error_ge10mm_mm"] == pytest.approx(-2.0)
    nothing = long_axis_summary(rows[2:])
    assert nothing["long_axis_error_mm"] is None and nothing["long_axis_missed"] == 1
    assert "1 missed" in "\n".join(report._long_axis_lines(nothing))
    text = report.segmentation_markdown({"model": "m", "split": "val", "n_cases": 3, "n_lt10mm": 2,
                                         "threshold": 0.35, "mirror": True, "tile": False, "scales": [1.0, 0.7],
                                         **{k: 0.5 for k in ("dice", "dice_median", "dice_lt10mm", "dice_ge10mm",
                                                             "precision", "recall")},
                                         **{"baseline_" + k: 0.4 for k in ("dice", "dice_median", "dice_lt10mm",
                                                                           "dice_ge10mm", "precision", "recall")},
                                         **summary})
    assert "mean error -0.50 mm" in text and "(1 without)" in text
    assert "probability >= 0.35" in text and "tiling off" in text and "averaged: 1, 0.7." in text
    unmirrored_tiles = report._inference_lines({"threshold": 0.35, "mirror": True, "tile": True, "tile_mirror": False})
    assert "tiling on (tiles not mirrored)" in unmirrored_tiles[0]
    assert "tiling on;" in report._inference_lines({"threshold": 0.35, "tile": True, "tile_mirror": True})[0]


def test_threshold_is_chosen_by_mean_dice() -> None:
    mask = np.zeros((4, 12, 12), np.uint8)
    mask[1:3, 3:9, 3:9] = 1
    prob = np.where(mask, 0.3, 0.0).astype(np.float32)  # a conservative model: the nodule at 0.3
    prob[0, 3:9, 3:9] = 0.15  # a rim the reader did not draw
    threshold, best = choose_threshold([prob], [mask])
    assert 0.15 < threshold <= 0.3 and best == pytest.approx(1.0)
    assert mean_dice([prob], [mask], 0.5) == 0.0


def test_checkpoint_threshold_and_scales_come_from_the_config(tmp_path: Path) -> None:
    save_model(build_model("resunet3d", ResUNet3dConfig(filters=(2, 4, 8, 16), bottom_filters=8)), tmp_path)
    assert checkpoint_inference(tmp_path).threshold == 0.5 and checkpoint_inference(tmp_path).scales == (1.0,)
    write_inference_settings(tmp_path, {"threshold": 0.35})
    assert checkpoint_inference(tmp_path).threshold == 0.35 and checkpoint_inference(tmp_path).scales == (1.0,)
    write_inference_settings(tmp_path, {"threshold": 0.4, "scales": [1.0, 0.8]})
    assert checkpoint_inference(tmp_path).scales == (1.0, 0.8)
    write_inference_settings(tmp_path, {"threshold": 0.4, "scales": [1.0, -2]})
    with pytest.raises(ValueError, match="scales"):
        checkpoint_inference(tmp_path)


@pytest.mark.slow
def test_evaluation_of_large_nodules_only(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    save_model(build_model("resunet3d", ResUNet3dConfig(filters=(2, 4, 8, 16), bottom_filters=8)), tmp_path / "w")
    config = SegmentationEvalConfig(tmp_path / "w", vois, "val", threshold=0.4, min_diameter_mm=15.0)
    metrics, rows = evaluate_segmentation(config)
    assert 0 < len(rows) < 30 and all(r["diameter_mm"] >= 15.0 for r in rows)
    assert metrics["threshold"] == 0.4 and metrics["n_lt10mm"] == 0
