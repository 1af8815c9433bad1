"""Logistic fits, Platt scaling and calibration metrics on data whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from lungai.evaluation.calibration import brier_score, expected_calibration_error, reliability_bins, reliability_png
from lungai.evaluation.logistic import fit_logistic, platt_scaling
from lungai.evaluation.metrics import roc_auc


def _logistic_data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 100.0, 0.0]
    y = (rng.random(n) < expit(2.0 * x[:, 0] - 0.5)).astype(int)
    return x, y


def test_ece_and_brier_by_hand() -> None:
    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    y = np.array([0, 1, 1, 1, 0])
    # bins: [0.0-0.1): mean p 0.05, observed 0.5 (2 cases); [0.9-1.0]: 0.95 vs 1 (2); [0.5-0.6): 0.55 vs 0 (1)
    assert expected_calibration_error(p, y) == pytest.approx((2 * 0.45 + 2 * 0.05 + 0.55) / 5)
    assert brier_score(p, y) == pytest.approx(np.mean((p - y) ** 2))
    assert [b.count for b in reliability_bins(np.array([0.0, 1.0, 0.1]), np.array([0, 1, 0]))] == [1, 1, 1]


def test_a_fit_recovers_the_generating_model_and_is_calibrated() -> None:
    x, y = _logistic_data()
    fit = fit_logistic(x, y, 2, penalty=0.0)
    slope = fit.weight[0] / fit.scale
    assert slope[0] == pytest.approx(2.0, abs=0.3) and abs(slope[1]) < 0.1
    assert expected_calibration_error(fit.predict(x), y) < 0.03


def test_three_classes_give_probabilities_that_sum_to_one() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    x = y[:, None] + rng.normal(0, 0.5, (300, 2))
    probability = fit_logistic(x, y, 3).predict(x)
    assert probability.shape == (300, 3)
    np.testing.assert_allclose(probability.sum(1), 1.0)
    assert np.mean(probability.argmax(1) == y) > 0.8


def test_platt_scaling_repairs_overconfident_scores_without_changing_their_order() -> None:
    x, y = _logistic_data(seed=2)
    overconfident = expit(6.0 * x[:, 0] - 1.5)
    a, b = platt_scaling(overconfident, y)
    repaired = expit(a * np.log(overconfident / (1 - overconfident)) + b)
    assert expected_calibration_error(repaired, y) < expected_calibration_error(overconfident, y) - 0.05
    assert roc_auc(repaired, y) == pytest.approx(roc_auc(overconfident, y))


def test_a_class_without_cases_is_refused() -> None:
    with pytest.raises(ValueError, match="classes needs training cases"):
        fit_logistic(np.zeros((4, 1)), np.array([0, 0, 1, 1]), 3)


def test_the_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    x, y = _logistic_data(200)
    path = reliability_png(expit(x[:, 0]), y, tmp_path / "reliability.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
