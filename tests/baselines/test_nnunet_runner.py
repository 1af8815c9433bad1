"""The nnU-Net runner without nnU-Net: environment per child, missing-extra message, logs and timing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

from lungai.baselines import nnunet_runner
from lungai.baselines.nnunet_runner import NnUNetPaths, NnUNetRunConfig, child_environment
from lungai.errors import ExternalToolError, MissingExtraError


def _paths(tmp_path: Path) -> NnUNetPaths:
    return NnUNetPaths(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")


def test_child_environment_sets_nnunet_folders_without_touching_ours(tmp_path: Path) -> None:
    before = dict(os.environ)
    env = child_environment(_paths(tmp_path), NnUNetRunConfig(dataset_id=1, threads=2, trainer_dirs=(tmp_path,)))
    assert env["nnUNet_raw"] == str(tmp_path / "raw")
    assert env["nnUNet_preprocessed"] == str(tmp_path / "pre")
    assert env["nnUNet_results"] == str(tmp_path / "res")
    assert env["nnUNet_extTrainer"] == str(tmp_path.resolve())
    assert env["OMP_NUM_THREADS"] == env["nnUNet_def_n_proc"] == "2" and env["nnUNet_n_proc_DA"] == "0"
    assert dict(os.environ) == before


def test_missing_nnunet_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(MissingExtraError, match=r"lungai\[nnunet\]"):
        nnunet_runner.find_command("nnUNetv2_train")


def test_cli_reports_missing_nnunet_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    code, _, err = run_cli(["baseline", "nnunet", "train", "--raw", str(tmp_path), "--preprocessed",
                            str(tmp_path / "p"), "--results", str(tmp_path / "r"), "--skip-preprocess"], capsys)
    assert code == MissingExtraError.exit_code
    assert err.startswith("error: nnU-Net v2 is not installed") and "lungai[nnunet]" in err


def test_run_step_keeps_log_and_timing_and_raises_on_failure(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    ok = nnunet_runner.run_step("train", [sys.executable, "-c", "print('hello')"], dict(os.environ), paths)
    assert "hello" in ok.log.read_text() and ok.seconds > 0 and ok.peak_rss_mb > 0
    assert (paths.results / "lungai_logs" / "train.json").is_file()
    with pytest.raises(ExternalToolError, match="status 3"):
        nnunet_runner.run_step("train", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), paths)
    assert ok.log.read_text().count("$ ") == 2


def test_nnunet_bin_is_searched_first_and_named_when_the_command_is_missing(tmp_path: Path) -> None:
    other_env = tmp_path / "other-venv" / "bin"
    other_env.mkdir(parents=True)
    (other_env / "nnUNetv2_train").write_text("#!/bin/sh\n")
    assert nnunet_runner.find_command("nnUNetv2_train", other_env) == str(other_env / "nnUNetv2_train")
    with pytest.raises(MissingExtraError, match="nnUNetv2_predict not found in .*other-venv"):
        nnunet_runner.find_command("nnUNetv2_predict", other_env)
