"""``lungai train`` and ``lungai evaluate`` end to end on a few real VOIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from shared_data import require

from lungai.cli.main import cli
from lungai.models.checkpoint import load_model

pytestmark = pytest.mark.slow


def test_train_then_evaluate_on_the_validation_split(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "malignancy", "--model", "nodule_cnn2d", "--data", str(vois),
                                  "--out", str(run), "--epochs", "1", "--max-cases", "8", "--batch-size", "4",
                                  "--threads", "1", "--model-config", '{"filters": [4, 8, 8], "hidden": 16}'])
    assert trained.exit_code == 0, trained.output
    assert "best val_auc" in trained.output and (run / "model.safetensors").is_file()
    assert load_model(run).config.filters == (4, 8, 8)
    report = tmp_path / "eval"
    evaluated = runner.invoke(cli, ["evaluate", "malignancy", "--weights", str(run), "--data", str(vois),
                                    "--split", "val", "-o", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"auc", "auc_8_20mm", "auc_diameter_baseline"} <= set(metrics)
    assert (report / "roc.png").is_file() and (report / "report.md").is_file()


def test_wrong_model_for_task_is_a_usage_error(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    result = CliRunner().invoke(cli, ["train", "nodule-seg", "--model", "nodule_cnn2d", "--data", str(vois),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "malignancy model" in result.output


@pytest.mark.parametrize("text, message", [("{filters: 4}", "is not JSON"), ("[4, 8]", "JSON object"),
                                           ('{"filterz": [4]}', "no setting filterz")])
def test_model_config_that_is_not_a_json_object_is_a_usage_error(data_root: Path, tmp_path: Path, text: str,
                                                                  message: str) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    result = CliRunner().invoke(cli, ["train", "nodule-seg", "--model", "resunet3d", "--data", str(vois),
                                      "--out", str(tmp_path), "--model-config", text])
    assert result.exit_code == 2 and message in result.output
    assert not any(tmp_path.iterdir())


def test_a_missing_negative_scan_is_a_usage_error(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    result = CliRunner().invoke(cli, ["train", "nodule-seg", "--model", "r3d_denseunet", "--data", str(vois),
                                      "--out", str(tmp_path / "run"), "--negatives", str(tmp_path / "no.nrrd:left")])
    assert result.exit_code == 2 and "no such scan" in result.output
    assert not (tmp_path / "run").exists()
    alone = CliRunner().invoke(cli, ["train", "nodule-seg", "--model", "r3d_denseunet", "--data", str(vois),
                                     "--out", str(tmp_path / "run"), "--negatives-per-scan", "5"])
    assert alone.exit_code == 2 and "needs --negatives" in alone.output and not (tmp_path / "run").exists()
