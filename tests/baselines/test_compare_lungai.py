"""``lungai compare`` on a LungAI checkpoint scores exactly what ``lungai evaluate`` scores, with the checkpoint's
threshold and scales."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from mini_vois import mini_vois
from shared_data import require

from lungai.models.checkpoint import save_model, write_inference_settings
from lungai.models.registry import build_model
from lungai.models.resunet3d import ResUNet3dConfig
from lungai.weights.resolver import resolve

PROBABILITY = 0.55  # the model's output everywhere
STORED_THRESHOLD = 0.6  # above it: the checkpoint's own threshold gives empty masks, 0.5 gives full ones


def _constant_checkpoint(folder: Path) -> Path:
    """A small resunet3d whose head outputs PROBABILITY everywhere, saved with STORED_THRESHOLD."""
    model = build_model("resunet3d", ResUNet3dConfig(filters=(4, 8), bottom_filters=8))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(math.log(PROBABILITY / (1 - PROBABILITY)))
    save_model(model, folder)
    write_inference_settings(folder, {"threshold": STORED_THRESHOLD})
    return folder


@pytest.mark.slow
def test_compare_uses_the_checkpoint_threshold_like_evaluate(data_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    vois = mini_vois(require(data_root / "lidc_vois"), tmp_path / "vois", per_split=3, parts=("test",))
    weights = _constant_checkpoint(tmp_path / "model")
    runs = {}
    for name, extra in (("stored", []), ("half", ["--threshold", "0.5"])):
        code, _, err = run_cli(["evaluate", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                                "--split", "test", "-o", str(tmp_path / name), *extra], capsys)
        assert code == 0, err
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    code, _, err = run_cli(["compare", "--data", str(vois), "--split", "test", str(weights),
                            "-o", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())["methods"][0]
    assert runs["stored"]["threshold"] == STORED_THRESHOLD
    assert runs["half"]["dice"] > 0.0  # at 0.5 the masks are not empty: the threshold decides
    assert compared["n_cases"] == runs["stored"]["n_cases"] == 3
    for key in ("dice", "precision", "recall"):
        assert compared[key] == pytest.approx(runs["stored"][key]), key


@pytest.mark.slow
def test_compare_averages_the_checkpoint_scales_like_evaluate(data_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    vois = mini_vois(require(data_root / "lidc_vois"), tmp_path / "vois", per_split=2, parts=("test",))
    weights = Path(shutil.copytree(resolve("resunet3d").folder, tmp_path / "model"))  # a trained model
    write_inference_settings(weights, {"threshold": 0.4, "scales": [1.0, 0.6], "tile_mirror": False})
    runs = {}
    for name, extra in (("stored", []), ("one", ["--scales", "1"])):
        code, _, err = run_cli(["evaluate", "nodule-seg", "--weights", str(weights), "--data", str(vois),
                                "--split", "test", "-o", str(tmp_path / name), *extra], capsys)
        assert code == 0, err
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert runs["stored"]["scales"] == [1.0, 0.6] and runs["one"]["scales"] == [1.0]
    assert runs["stored"]["recall"] != pytest.approx(runs["one"]["recall"])  # the scales change the masks
    code, _, err = run_cli(["compare", "--data", str(vois), "--split", "test", str(weights),
                            "-o", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())["methods"][0]
    assert compared["inference"] == {"threshold": 0.4, "scales": [1.0, 0.6], "tile_mirror": False}
    for key in ("dice", "precision", "recall"):
        assert compared[key] == pytest.approx(runs["stored"][key]), key
