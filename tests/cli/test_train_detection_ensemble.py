"""``lungai train detection-ensemble``: trained classifiers in, one loadable ensemble checkpoint out."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from cli_runner import run_cli

from lungai.models.checkpoint import load_model, save_model
from lungai.models.convlstm_nodule import ConvLSTMNodule, ConvLSTMNoduleConfig, ConvLSTMNoduleEnsemble
from lungai.models.resunet3d import ResUNet3d, ResUNet3dConfig


def _classifier(folder: Path, seed: int, width: int = 2) -> Path:
    torch.manual_seed(seed)
    save_model(ConvLSTMNodule(ConvLSTMNoduleConfig(conv_filters=width, lstm_filters=(width, width),
                                                   head_filters=width)), folder)
    (folder / "metrics.json").write_text(json.dumps({"best_epoch": seed + 3, "validation": {"auc": 0.9}}),
                                         encoding="utf-8")
    return folder


def _ensemble_args(tmp_path: Path, *members: Path, out: str = "ensemble") -> list[str]:
    args = ["train", "detection-ensemble", "--data-root", str(tmp_path), "--out", str(tmp_path / out),
            "--calibration-scans", "0"]
    for member in members:
        args += ["--member", str(member)]
    return args


def test_the_ensemble_checkpoint_averages_the_members_it_records(tmp_path: Path, capsys) -> None:
    members = [_classifier(tmp_path / f"m{seed}", seed) for seed in range(2)]
    code, stdout, _ = run_cli(_ensemble_args(tmp_path, *members), capsys)
    assert code == 0 and "ensemble of 2 classifiers" in stdout
    ensemble = load_model(tmp_path / "ensemble")
    assert isinstance(ensemble, ConvLSTMNoduleEnsemble) and len(ensemble.members) == 2
    x = torch.randn(1, 1, 10, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), (load_model(members[0])(x) + load_model(members[1])(x)) / 2)
    recorded = json.loads((tmp_path / "ensemble" / "members.json").read_text(encoding="utf-8"))
    assert [r["folder"] for r in recorded] == [str(m) for m in members]
    assert [r["best_epoch"] for r in recorded] == [3, 4]


def test_members_that_cannot_be_averaged_are_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    first = _classifier(tmp_path / "m0", 0)
    wider = _classifier(tmp_path / "wide", 1, width=3)
    code, _, stderr = run_cli(_ensemble_args(tmp_path, first, wider), capsys)
    assert code == 2 and "share one configuration" in stderr
    save_model(ResUNet3d(ResUNet3dConfig(filters=(2, 4), bottom_filters=4)), tmp_path / "segmenter")
    code, _, stderr = run_cli(_ensemble_args(tmp_path, first, tmp_path / "segmenter"), capsys)
    assert code == 2 and "not a ConvLSTMNodule" in stderr
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(_ensemble_args(tmp_path, first, tmp_path / "empty"), capsys)
    assert code == 2 and "--member" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "ensemble").exists()


def test_boundary_members_come_last_and_are_recorded(tmp_path: Path, capsys) -> None:
    members = [_classifier(tmp_path / f"m{seed}", seed) for seed in range(3)]
    args = _ensemble_args(tmp_path, *members[:2]) + ["--boundary-member", str(members[2])]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "ensemble of 3 classifiers (1 for the lung boundary)" in stdout
    ensemble = load_model(tmp_path / "ensemble")
    assert isinstance(ensemble, ConvLSTMNoduleEnsemble) and ensemble.config.boundary_members == 1
    x = torch.randn(1, 1, 10, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ensemble.members[2](x), load_model(members[2])(x))
    recorded = json.loads((tmp_path / "ensemble" / "members.json").read_text(encoding="utf-8"))
    assert [r.get("boundary_member", False) for r in recorded] == [False, False, True]
    only_boundary = ["train", "detection-ensemble", "--data-root", str(tmp_path), "--out",
                     str(tmp_path / "only_boundary"), "--calibration-scans", "0", "--boundary-member", str(members[2])]
    code, _, stderr = run_cli(only_boundary, capsys)  # an ensemble needs a general member
    assert code == 2 and "--member" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "only_boundary").exists()


def test_flips_are_recorded_in_the_checkpoint(tmp_path: Path, capsys) -> None:
    members = [_classifier(tmp_path / f"m{seed}", seed) for seed in range(2)]
    code, _, _ = run_cli(_ensemble_args(tmp_path, *members) + ["--flips"], capsys)
    assert code == 0 and load_model(tmp_path / "ensemble").config.flips
    code, _, _ = run_cli(_ensemble_args(tmp_path, *members, out="plain"), capsys)
    assert code == 0 and not load_model(tmp_path / "plain").config.flips
