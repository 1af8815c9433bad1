"""Malignancy evaluation: the diameter baseline, the paired bootstrap and the full report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shared_data import require
from sklearn.linear_model import LogisticRegression

from lungai.evaluation import report
from lungai.evaluation.baselines import DiameterLogistic
from lungai.evaluation.malignancy_eval import MalignancyEvalConfig, evaluate_malignancy, paired_auc_difference
from lungai.models.checkpoint import save_model
from lungai.models.nodule_cnn2d import NoduleCNN2dConfig
from lungai.models.registry import build_model


def test_diameter_logistic_matches_unpenalised_sklearn() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(3, 30, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(-(d - 12) / 3))).astype(int)
    ours = DiameterLogistic.fit(d, y)
    theirs = LogisticRegression(C=np.inf).fit(d[:, None], y)
    np.testing.assert_allclose(ours.predict(d), theirs.predict_proba(d[:, None])[:, 1], atol=1e-4)


def test_paired_difference_of_a_scorer_with_itself_is_zero() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    scores = labels + rng.normal(0, 1, 80)
    diff = paired_auc_difference(scores, scores, labels, n_bootstrap=200)
    assert diff["difference"] == diff["low"] == diff["high"] == 0.0


def test_better_scorer_has_a_positive_difference() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    diff = paired_auc_difference(labels + rng.normal(0, 0.3, 200), labels + rng.normal(0, 2, 200), labels, 300)
    assert diff["low"] > 0


@pytest.mark.slow
def test_evaluation_report_on_the_validation_split(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    model = build_model("nodule_cnn2d", NoduleCNN2dConfig(filters=(4, 8, 8), hidden=8))
    save_model(model, tmp_path / "w")
    metrics, arrays = evaluate_malignancy(MalignancyEvalConfig((tmp_path / "w",), vois, "val", n_bootstrap=100))
    for key in ("auc", "auc_8_20mm", "auc_diameter_baseline", "auc_difference", "sensitivity", "confusion_matrix"):
        assert key in metrics
    assert metrics["auc_diameter_baseline"] > 0.85
    assert sum(metrics["confusion_matrix"].values()) == metrics["n_cases"] == arrays["labels"].size
    assert "radiologists' suspicion" in report.malignancy_markdown(metrics, "roc.png")
    json.dumps(metrics)


def test_roc_png_is_written(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from lungai.evaluation.metrics import roc_curve

    curve = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    image = iio.imread(report.roc_png([(curve, "blue")], tmp_path / "roc.png"))
    assert image.shape[2] == 3 and (image == np.array(report.COLOURS["blue"], np.uint8)).all(axis=2).any()


def test_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        evaluate_malignancy(MalignancyEvalConfig((tmp_path,), tmp_path, "train"))
