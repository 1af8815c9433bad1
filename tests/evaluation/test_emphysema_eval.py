"""Emphysema metrics at a fixed threshold and the paper's Table 1 layout."""

from __future__ import annotations

import numpy as np
import pytest

from lungai.evaluation.emphysema_eval import PAPER_AUC, binary_metrics, comparison_markdown
from lungai.evaluation.metrics import youden_threshold


def test_binary_metrics_count_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.35, 0.2, 0.1])
    labels = np.array([1, 0, 1, 0, 0, 0])
    metrics = binary_metrics(scores, labels, threshold=0.4, n_bootstrap=200)
    # at >= 0.4: TP 2 (0.9, 0.4), FP 1 (0.8), FN 0, TN 3
    assert metrics["sensitivity"] == 1.0
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert metrics["auc"] == pytest.approx(7 / 8)  # 1.0 beats all four negatives, 0.4 beats three
    assert metrics["auc_ci_low"] <= metrics["auc"] <= metrics["auc_ci_high"]


def test_youden_threshold_is_finite_when_nothing_should_be_positive() -> None:
    scores = np.array([0.9, 0.1])
    assert youden_threshold(scores, np.array([1, 0])) == pytest.approx(0.9)
    inverted = youden_threshold(scores, np.array([0, 1]))
    assert np.isfinite(inverted) and inverted > 0.9


def test_table_has_the_papers_columns_and_numbers() -> None:
    method = {"kernels": "3x3 conv (2D) + 3x3 ConvLSTM", "parameters": 57449, "auc": 0.81, "auc_ci_low": 0.7,
              "auc_ci_high": 0.9, "sensitivity": 0.8, "specificity": 0.75, "f1": 0.78}
    result = {"split": "test", "data": "labels.csv", "n": 48, "n_positive": 22,
              "methods": [{**method, "name": "convlstm_scanner", "paper_auc": PAPER_AUC["convlstm_scanner"]},
                          {**method, "name": "laa950", "kernels": "-", "parameters": 0, "paper_auc": None}]}
    table = comparison_markdown(result)
    assert "| method | kernels | parameters | AUC (95% CI) | sensitivity | specificity | F1 | paper AUC |" in table
    assert "| ConvLSTM scanner | 3x3 conv (2D) + 3x3 ConvLSTM | 57,449 | 0.810 (0.700-0.900) | 0.800 | 0.750 |" in table
    assert "| LAA-950 alone (densitometry) | - | - |" in table and "0.83" in table
