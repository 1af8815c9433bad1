"""Segmentation evaluation: the threshold baseline and the native-grid report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungai.evaluation import report
from lungai.evaluation.baselines import threshold_segmentation
from lungai.evaluation.metrics import dice
from lungai.evaluation.segmentation_eval import SegmentationEvalConfig, evaluate_segmentation, largest_component
from lungai.models.checkpoint import save_model
from lungai.models.registry import build_model
from lungai.models.resunet3d import ResUNet3dConfig
from shared_data import require


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
    assert len(rows) == metrics["n_cases"] > 100
    for key in ("dice", "dice_median", "dice_lt10mm", "dice_ge10mm", "precision", "recall", "baseline_dice"):
        assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0
    assert 0.3 < metrics["baseline_dice"] < 0.8
    assert "Dice >= 10 mm" in report.segmentation_markdown(metrics)
