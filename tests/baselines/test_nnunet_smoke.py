"""Smoke test of the nnU-Net baseline on CPU: export a few VOIs, train a tiny trainer, predict, compare.

The trainer (two epochs of two iterations) is registered through ``nnUNet_extTrainer``, which
nnunetv2 has from 2.8. nnU-Net runs from its own environment (``$LUNGAI_NNUNET_BIN``, else
``.venv-nnunet/bin``, which ``make test`` builds, else this environment): its trainer lookup imports
timm and so torchvision, which does not import beside the CPU build of torch that LungAI's
``.venv`` keeps (DEVELOPERS.md). The test prints which torch each side ran on. It skips when no
nnU-Net is found, except in CI (``CI`` set), where it fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from mini_vois import mini_vois
from shared_data import REPO_ROOT, require

from lungai.baselines.nnunet_runner import find_command
from lungai.errors import MissingExtraError

TRAINER_DIR = REPO_ROOT / "core" / "baselines" / "nnunet_trainers"
CASES_PER_SPLIT = 3
_PROBE = ("import json, sys, torch, torchvision, nnunetv2.paths as p; "
          "sys.exit('nnUNet_extTrainer needs nnunetv2 >= 2.8') if not hasattr(p, 'nnUNet_extTrainer') else None; "
          "from importlib.metadata import version; "
          "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f; "
          "f('nnUNetTrainer_1epoch'); "
          "print(json.dumps({'nnunetv2': version('nnunetv2'), 'torch': torch.__version__, "
          "'torchvision': torchvision.__version__}))")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the nnU-Net smoke test: {reason}")
    pytest.skip(reason)


def _nnunet_bin() -> Path | None:
    """``$LUNGAI_NNUNET_BIN``, else the repository's ``.venv-nnunet/bin``, else None (this environment)."""
    env = os.environ.get("LUNGAI_NNUNET_BIN")
    if env:
        return Path(env)
    local = REPO_ROOT / ".venv-nnunet" / "bin"
    return local if local.is_dir() else None


def _require_nnunet(nnunet_bin: Path | None) -> dict[str, str]:
    """The versions nnU-Net's environment runs (nnunetv2, torch, torchvision); skips or fails when unusable."""
    try:
        train = Path(find_command("nnUNetv2_train", nnunet_bin))
    except MissingExtraError as exc:
        _unavailable(exc.message)
    python = train.parent / "python"
    if not python.is_file():
        python = Path(train.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip() or sys.executable)
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        why = ("; PyPI's torchvision (pulled in by timm) does not import beside a CPU build of torch: "
               "use a separate environment (make nnunet-venv)" if "torchvision" in probe.stderr else "")
        _unavailable(f"nnU-Net's trainer lookup fails in {python} ({last}){why}")
    return json.loads(probe.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_export_train_predict_compare(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      record_property: pytest.RecordProperty) -> None:
    nnunet_bin = _nnunet_bin()
    versions = _require_nnunet(nnunet_bin)
    ran_on = (f"nnunetv2 {versions['nnunetv2']} on torch {versions['torch']} / torchvision "
              f"{versions['torchvision']} ({nnunet_bin or 'this environment'}); lungai on torch {torch.__version__}")
    record_property("nnunet_environment", ran_on)
    with capsys.disabled():
        sys.stdout.write(f"\n[nnU-Net smoke test] {ran_on}\n")
    vois = mini_vois(require(data_root / "lidc_vois"), tmp_path / "vois", CASES_PER_SPLIT)
    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    folders = ["--raw", str(raw), "--preprocessed", str(pre), "--results", str(res)]
    model = ["--dataset-id", "977", "--configuration", "3d_fullres", "--trainer", "nnUNetTrainer_LungAISmoke",
             "--fold", "0", "--device", "cpu", "--threads", "1", "--trainer-dir", str(TRAINER_DIR),
             *(["--nnunet-bin", str(nnunet_bin)] if nnunet_bin else [])]
    before = {k: v for k, v in os.environ.items() if k.startswith("nnUNet")}

    code, _, err = run_cli(["baseline", "nnunet", "export", "--data", str(vois), "--out", str(raw),
                            "--dataset-id", "977", "--name", "Smoke"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["baseline", "nnunet", "train", *folders, *model], capsys)
    assert code == 0, err + (res / "lungai_logs" / "train.log").read_text()[-3000:]
    assert (res / "lungai_logs" / "plan_and_preprocess.log").is_file()
    code, _, err = run_cli(["baseline", "nnunet", "predict", *folders, *model, "-o", str(tmp_path / "pred")], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == CASES_PER_SPLIT
    code, _, err = run_cli(["compare", "--data", str(vois), "--split", "test", str(tmp_path / "pred"),
                            "-o", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert results["n_cases"] == CASES_PER_SPLIT and results["methods"][0]["seconds_per_case"] > 0
    assert {k: v for k, v in os.environ.items() if k.startswith("nnUNet")} == before
    # nnU-Net's environment did not replace LungAI's torch (constraints.txt's pin).
    pinned = next(line.split("==")[1].strip() for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
                  if line.startswith("torch=="))
    assert torch.__version__.split("+")[0] == pinned
