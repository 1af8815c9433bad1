"""Choosing the mask threshold and test-time scales on the validation split (lungai tune)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from mini_vois import mini_vois
from shared_data import require

from lungai.evaluation.inference_tuning import TuningConfig, best_setting, scale_sets
from lungai.evaluation.segmentation_eval import THRESHOLDS, checkpoint_inference
from lungai.models.checkpoint import save_model, write_inference_settings
from lungai.models.registry import build_model
from lungai.models.resunet3d import ResUNet3dConfig
from lungai.weights.resolver import resolve


def test_scale_sets_always_hold_the_trained_spacing() -> None:
    assert scale_sets((0.9, 0.8), 1) == [(1.0,)]
    assert scale_sets((0.9, 0.8), 2) == [(1.0,), (1.0, 0.8), (1.0, 0.9)]
    assert scale_sets((0.9, 0.8), 3) == [(1.0,), (1.0, 0.8), (1.0, 0.9), (1.0, 0.8, 0.9)]
    assert scale_sets((0.9,), 4) == [(1.0,), (1.0, 0.9)]


def _disc(shape: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - (n - 1) / 2) ** 2 for g, n in zip(grid, shape)) <= radius ** 2


def test_the_scale_that_recovers_the_outline_wins() -> None:
    masks = [_disc((9, 21, 21), r) for r in (4.0, 6.0)]
    tight = [np.where(_disc(m.shape, r - 1.5), 0.9, 0.0).astype(np.float32) for m, r in zip(masks, (4.0, 6.0))]
    rim = [np.where(m, 0.9, 0.0).astype(np.float32) for m in masks]  # the magnified pass sees the whole nodule
    useless = [np.zeros_like(m, np.float32) for m in masks]
    by_scale = {1.0: tight, 0.8: rim, 1.1: useless}
    probabilities = {(s, t): p for s, p in by_scale.items() for t in THRESHOLDS}
    best, scored = best_setting(probabilities, [m.astype(np.uint8) for m in masks], scale_sets((0.8, 1.1), 2))
    assert best["scales"] == [1.0, 0.8] and best["dice"] == pytest.approx(1.0)
    assert 0.1 <= best["threshold"] <= 0.45  # the averaged rim is at 0.45
    assert len(scored) == 3 * len(THRESHOLDS)


def test_ties_go_to_fewer_scales() -> None:
    masks = [_disc((9, 21, 21), 5.0).astype(np.uint8)]
    exact = [np.where(masks[0], 0.9, 0.0).astype(np.float32)]
    best, _ = best_setting({(s, t): exact for s in (1.0, 0.9) for t in THRESHOLDS}, masks, scale_sets((0.9,), 2))
    assert best["scales"] == [1.0] and best["dice"] == 1.0 and best["threshold"] == 0.5


@pytest.mark.parametrize("candidates", [(1.0,), (0.8, 0.8), (0.0,), (2.5,)])
def test_bad_candidates_are_refused(candidates: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="candidate scales"):
        TuningConfig(Path("w"), Path("d"), candidates)


@pytest.mark.slow
def test_tune_records_a_choice_that_evaluate_reproduces(data_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    vois = mini_vois(require(data_root / "lidc_vois"), tmp_path / "vois", per_split=3, parts=("val", "test"))
    weights = Path(shutil.copytree(resolve("resunet3d").folder, tmp_path / "w"))  # trained: few nodules need tiles
    write_inference_settings(weights, {"threshold": 0.5, "roi_shape_zyx": [16, 48, 48]})
    code, out, err = run_cli(["tune", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                              "--candidates", "0.9", "--dry-run", "-o", str(tmp_path / "dry.json")], capsys)
    assert code == 0, err
    assert "not recorded" in out and checkpoint_inference(weights).threshold == 0.5
    assert (tmp_path / "dry.json").is_file() and not (weights / "inference_tuning.json").exists()
    code, out, err = run_cli(["tune", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                              "--candidates", "0.9", "--no-tile-mirror"], capsys)
    assert code == 0, err
    assert "tiles not mirrored" in out and "re-scored with tiles not mirrored" in out
    result = json.loads((weights / "inference_tuning.json").read_text())
    assert result["split"] == "val" and result["n_cases"] == 3 and len(result["candidates"]) == 2 * len(THRESHOLDS)
    assert result["val_dice"] == max(c["dice"] for c in result["candidates"]) >= result["previous"]["val_dice"]
    recorded = json.loads((weights / "config.json").read_text())["inference"]
    assert recorded["threshold"] == result["threshold"] and recorded["scales"] == result["scales"]
    assert recorded["tile_mirror"] is False and result["tile_mirror"] is False
    assert recorded["roi_shape_zyx"] == [16, 48, 48]  # the other settings are kept
    code, _, err = run_cli(["evaluate", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                            "--split", "val", "-o", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["scales"] == result["scales"] and metrics["threshold"] == result["threshold"]
    assert metrics["tile_mirror"] is False  # evaluate runs the checkpoint as it was tuned
    code, _, err = run_cli(["evaluate", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                            "--split", "val", "--tile-mirror", "-o", str(tmp_path / "eval_mirrored")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "eval_mirrored" / "metrics.json").read_text())["tile_mirror"] is True
    assert metrics["dice"] == pytest.approx(result["val_dice"], abs=1e-6)


def test_tune_refuses_bad_candidate_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_model(build_model("resunet3d", ResUNet3dConfig(filters=(2, 4, 8, 16), bottom_filters=8)), tmp_path)
    code, _, err = run_cli(["tune", "nodule-seg", "--weights", str(tmp_path), "--data", str(tmp_path),
                            "--candidates", "0.8,big"], capsys)
    assert code == 2 and "comma-separated" in err and "Traceback" not in err
    code, _, err = run_cli(["tune", "nodule-seg", "--weights", str(tmp_path), "--data", str(tmp_path),
                            "--candidates", "1"], capsys)
    assert code == 2 and "differ from 1" in err


def test_tune_refuses_the_released_weights_and_a_missing_output_folder(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    released = resolve("resunet3d").folder
    before = (released / "config.json").read_bytes()
    code, _, err = run_cli(["tune", "nodule-seg", "--weights", str(released), "--data", str(tmp_path)], capsys)
    assert code == 2 and "installed resunet3d weights" in err and "Traceback" not in err
    assert (released / "config.json").read_bytes() == before
    code, _, err = run_cli(["tune", "nodule-seg", "--weights", str(tmp_path), "--data", str(tmp_path),
                            "-o", str(tmp_path / "nowhere" / "t.json")], capsys)
    assert code == 2 and "does not exist" in err


def test_tune_refuses_a_classifier(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    classifier = Path(shutil.copytree(resolve("resnet50_3d").folder, tmp_path / "c"))
    write_inference_settings(classifier, {"threshold": 0.5})  # a run of its own, not the released files
    code, _, err = run_cli(["tune", "nodule-seg", "--weights", str(classifier), "--data", str(vois)], capsys)
    assert code == 2 and "not a nodule segmentation model" in err and "Traceback" not in err


def test_the_tuned_models_are_the_nodule_seg_recipes():
    from lungai.evaluation.inference_tuning import NODULE_SEG_MODELS
    from lungai.training.recipes import models_for_task

    assert sorted(NODULE_SEG_MODELS) == sorted(models_for_task("nodule-seg"))
