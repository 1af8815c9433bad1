"""``lungai compare`` on prediction folders: same cases, per-case and total Dice, Wilcoxon, markdown + JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from shared_data import require

from lungai.baselines.compare import paired_test
from lungai.evaluation.cases import evaluation_cases


def _write_predictions(vois: Path, folder: Path, erode: bool) -> None:
    folder.mkdir(parents=True)
    for case in evaluation_cases(vois, "test"):
        if not erode:
            shutil.copyfile(case.mask_path, folder / f"{case.case_id}.nii.gz")
            continue
        mask = sitk.ReadImage(str(case.mask_path)) > 0
        sitk.WriteImage(sitk.BinaryErode(mask, [1, 1, 0]), str(folder / f"{case.case_id}.nii.gz"))
    (folder / "lungai_timing.json").write_text(json.dumps({"method": folder.name, "n_cases": 4, "seconds": 2.0,
                                                           "peak_rss_mb": 100.0}))


def test_compare_prediction_folders(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vois = require(data_root / "lidc_vois")
    _write_predictions(vois, tmp_path / "eroded", erode=True)
    _write_predictions(vois, tmp_path / "perfect", erode=False)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["compare", "--data", str(vois), "--split", "test", str(tmp_path / "eroded"),
                                 str(tmp_path / "perfect"), "-o", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "compare.json").read_text())
    eroded, perfect = results["methods"]
    assert perfect["dice"] == pytest.approx(1.0) and perfect["dice_median"] == pytest.approx(1.0)
    assert eroded["dice"] < 1.0
    assert perfect["n_cases"] == eroded["n_cases"] == results["n_cases"]
    assert perfect["seconds_per_case"] == pytest.approx(0.5) and perfect["peak_rss_mb"] == 100.0
    test = results["paired_tests"][0]
    assert test["other"] == "perfect" and test["mean_difference"] > 0 and test["p_value"] < 0.05
    markdown = (out / "compare.md").read_text()
    assert "Higher mean Dice: **perfect**" in markdown and "Wilcoxon" in markdown
    assert (out / "cases.csv").read_text().count("\n") == results["n_cases"] + 1
    assert "perfect: Dice 1.000" in stdout


def test_paired_test_of_identical_scores_has_no_p_value() -> None:
    result = paired_test(np.array([0.5, 0.7]), np.array([0.5, 0.7]))
    assert result["p_value"] is None and result["mean_difference"] == 0.0


def test_compare_rejects_a_folder_that_is_no_method(data_root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    vois = require(data_root / "lidc_vois")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["compare", "--data", str(vois), str(tmp_path / "empty"), "-o", str(tmp_path / "o")],
                           capsys)
    assert code == 3 and "neither a LungAI checkpoint" in err
