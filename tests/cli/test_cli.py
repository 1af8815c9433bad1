"""The command line end to end on the synthetic phantom: outputs, progress, help, info."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from shared_data import REPO_ROOT

from lungai.data.phantom import make_phantom
from lungai.errors import EXIT_CODES
from lungai.io.findings import load_findings


@pytest.fixture(scope="module")
def phantom_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "chest.nii.gz"
    sitk.WriteImage(make_phantom().image, str(path))
    return path


def test_run_writes_every_output(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["run", str(phantom_scan), "-o", str(out), "--tasks", "lungs,emphysema",
                               "--device", "cpu", "--progress", "none"], capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["chest.seg.nrrd", "chest_labels.nii.gz", "findings.json",
                                                    "nodules.csv", "report.html", "report.pdf", "run.log"]
    findings = load_findings(out / "findings.json")
    assert findings["run"]["tasks"] == ["lungs", "emphysema"]
    assert set(findings["run"]["timings_s"]) == {"read", "lungs", "emphysema", "write"}
    assert findings["nodules"] == []
    assert 0.9e3 < findings["lungs"]["right"]["volume_ml"] < 1.6e3
    assert "Right lung" in stdout and "LAA-950" in stdout
    assert "stage lungs finished" in (out / "run.log").read_text()
    assert not list(tmp_path.glob(".lungai-*"))


def test_tasks_lungs_only_skips_emphysema(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    code, _, _ = run_cli(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "lungs",
                          "--device", "cpu", "--progress", "none"], capsys)
    findings = load_findings(tmp_path / "o" / "findings.json")
    assert code == 0 and findings["emphysema"] is None and findings["run"]["tasks"] == ["lungs"]


def test_task_without_weights_is_refused(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"manifest_version": 1, "models": []}')
    code, _, stderr = run_cli(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "nodules",
                               "--weights-manifest", str(manifest)], capsys)
    assert code == 10 and "the nodules task needs the convlstm_nodule weights" in stderr
    assert len(stderr.strip().splitlines()) <= 2 and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_unknown_task_is_refused(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = run_cli(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "lobes"], capsys)
    assert code == 2 and "unknown task" in stderr


def test_jsonl_progress_is_machine_readable(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    code, stdout, _ = run_cli(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "lungs,emphysema",
                               "--device", "cpu", "--progress", "jsonl"], capsys)
    events = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    stages = [(e["stage"], e["status"]) for e in events if e["event"] == "stage"]
    assert stages == [(s, st) for s in ("read", "lungs", "emphysema", "write") for st in ("started", "finished")]
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(e["v"] == 1 for e in events)


def test_jsonl_reports_errors_as_events(tmp_path: Path, capsys) -> None:
    code, stdout, _ = run_cli(["run", str(tmp_path / "missing.nrrd"), "-o", str(tmp_path / "o"),
                               "--device", "cpu", "--progress", "jsonl"], capsys)
    last = json.loads(stdout.splitlines()[-1])
    assert last["event"] == "error" and last["data"]["exit_code"] == code == 3
    assert "does not exist" in last["message"]


def test_overwrite_replaces_only_when_asked(phantom_scan: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    args = ["run", str(phantom_scan), "-o", str(out), "--tasks", "lungs", "--device", "cpu", "--progress", "none"]
    assert run_cli(args, capsys)[0] == 0
    (out / "marker.txt").write_text("old run")
    assert run_cli(args, capsys)[0] == 8
    assert (out / "marker.txt").exists()
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    assert not (out / "marker.txt").exists()


def test_output_inside_input_folder_is_refused(tmp_path: Path, capsys) -> None:
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    code, _, stderr = run_cli(["run", str(scan_dir), "-o", str(tmp_path), "--overwrite", "--device", "cpu"], capsys)
    assert code == 8 and "contains the input" in stderr
    assert scan_dir.exists()


def test_default_output_is_in_the_current_folder(phantom_scan: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(["run", str(phantom_scan), "--tasks", "lungs", "--device", "cpu", "--progress", "none"],
                         capsys)
    assert code == 0 and (tmp_path / "chest_lungai" / "findings.json").exists()


def test_demo_prints_findings_and_truth(tmp_path: Path, capsys) -> None:
    code, stdout, _ = run_cli(["demo", "-o", str(tmp_path / "demo"), "--progress", "none"], capsys)
    assert code == 0
    assert "Phantom truth" in stdout and "Right lung" in stdout
    assert (tmp_path / "demo" / "phantom_ct.nrrd").exists()
    assert (tmp_path / "demo" / "phantom_ct_lungai" / "findings.json").exists()
    code, _, stderr = run_cli(["demo", "-o", str(tmp_path / "demo"), "--progress", "none"], capsys)
    assert code == 8 and "--overwrite" in stderr


def test_info_lists_devices_and_models(capsys) -> None:
    code, stdout, _ = run_cli(["info", "--models"], capsys)
    assert code == 0
    assert "default device: cpu" in stdout or "default device: cuda" in stdout
    assert re.search(r"convlstm_nodule\s+182,075 trainable\s+182,093 Keras", stdout)


def test_help_texts_cover_every_command(capsys) -> None:
    for command in ("run", "info", "demo"):
        code, stdout, _ = run_cli([command, "--help"], capsys)
        assert code == 0 and len(stdout.splitlines()) > 5
    code, stdout, _ = run_cli(["--help"], capsys)
    assert "Exit codes" in stdout and "130" in stdout


def test_exit_code_doc_matches_the_code() -> None:
    doc = (REPO_ROOT / "docs" / "exit-codes.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", doc, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES


def test_python_m_entry_point(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--progress" in result.stdout


def test_info_models_shows_the_shipped_networks_beside_the_papers(capsys) -> None:
    from lungai.models.checkpoint import load_model
    from lungai.models.summary import count_parameters
    from lungai.weights.resolver import resolve

    shipped = count_parameters(load_model(resolve("convlstm_nodule").folder))
    code, stdout, _ = run_cli(["info", "--models"], capsys)
    assert code == 0
    assert re.search(rf"convlstm_nodule\s+{shipped:,} shipped\s+182,075 paper\s+nodules: false-positive classifier",
                     stdout)
    assert "nodule mask in a candidate ROI" not in stdout


def test_weights_list_names_no_folder_that_does_not_exist(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "weights"
    monkeypatch.setenv("LUNGAI_WEIGHTS_DIR", str(folder))
    code, stdout, _ = run_cli(["weights", "list"], capsys)
    assert code == 0 and f"User weights folder: none yet (`lungai weights import` creates {folder})" in stdout
    folder.mkdir()
    code, stdout, _ = run_cli(["weights", "list"], capsys)
    assert code == 0 and f"User weights folder: {folder}\n" in stdout


# -- lungai train TASK / lungai evaluate TASK: the same runs as before the subcommands ------------

def _trained(calls: list[tuple[object, bool]], out: Path):
    """A stand-in for a trainer: records its config and ``resume``, returns a result to print."""
    from types import SimpleNamespace

    def run(config: object, on_event: object = None, resume: bool = True) -> SimpleNamespace:
        calls.append((config, resume))
        return SimpleNamespace(best_metric=0.5, best_epoch=0, epochs_run=1, stopped_early=False, out=out)
    return run


def test_train_malignancy_runs_the_recipe_with_the_options_given(tmp_path: Path, monkeypatch, capsys) -> None:
    from lungai.training import trainer
    from lungai.training.recipes import make_config

    calls: list[tuple[object, bool]] = []
    monkeypatch.setattr(trainer, "train", _trained(calls, tmp_path / "run"))
    code, stdout, err = run_cli(["train", "malignancy", "--model", "nodule_cnn2d", "--data", str(tmp_path), "--out",
                                 str(tmp_path / "run"), "--size", "cpu", "--epochs", "2", "--batch-size", "3",
                                 "--lr", "0.01", "--threads", "1", "--seed", "5", "--max-cases", "4",
                                 "--min-diameter-mm", "8", "--shift-fraction", "0.2", "--model-config",
                                 '{"hidden": 16}', "--restart"], capsys)
    assert code == 0, err
    assert "best val_auc 0.5000 at epoch 1 of 1" in stdout
    assert calls == [(make_config("malignancy", "nodule_cnn2d", tmp_path, tmp_path / "run", size="cpu", epochs=2,
                                  batch_size=3, lr=0.01, num_threads=1, seed=5, max_cases=4, min_diameter_mm=8.0,
                                  shift_fraction=0.2, model_config={"hidden": 16}), False)]


def test_train_nodule_seg_takes_negative_scans_and_the_default_run_folder(tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    from lungai.training import trainer

    calls: list[tuple[object, bool]] = []
    monkeypatch.setattr(trainer, "train", _trained(calls, tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scan.nrrd").write_bytes(b"")
    code, stdout, err = run_cli(["train", "nodule-seg", "--model", "resunet3d", "--data", str(tmp_path), "--no-augment",
                                 "--negatives", "scan.nrrd:left", "--negatives-per-scan", "5"], capsys)
    assert code == 0, err
    [(config, resume)] = calls
    assert resume and "best val_dice" in stdout
    assert (config.task, config.model, config.out) == ("nodule-seg", "resunet3d", Path("runs/nodule-seg/resunet3d"))
    assert (config.negative_scans, config.negatives_per_scan, config.augment) == (["scan.nrrd:left"], 5, False)


def test_train_emphysema_runs_its_trainer_on_the_csv(tmp_path: Path, monkeypatch, capsys) -> None:
    from lungai.training import emphysema

    calls: list[tuple[object, bool]] = []
    monkeypatch.setattr(emphysema, "train_emphysema", _trained(calls, tmp_path / "run"))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    code, stdout, err = run_cli(["train", "emphysema", "--model", "mil_max", "--data", str(labels), "--out",
                                 str(tmp_path / "run"), "--epochs", "3", "--size", "cpu", "--seed", "2"], capsys)
    assert code == 0, err
    [(config, resume)] = calls
    assert resume and "best val_auc 0.5000" in stdout
    assert (config.model, config.data, config.epochs, config.size, config.seed) == ("mil_max", labels, 3, "cpu", 2)


def test_the_old_train_detection_name_parses_as_train_detection(tmp_path: Path, monkeypatch, capsys) -> None:
    import click

    from lungai.cli.main import cli

    context = click.Context(cli)
    calls: list[dict[str, object]] = []
    group = cli.get_command(context, "train")
    assert isinstance(group, click.Group)
    for command in (cli.get_command(context, "train-detection"), group.commands["detection"]):
        monkeypatch.setattr(command, "callback", lambda **kwargs: calls.append(kwargs))
    args = ["--data-root", str(tmp_path), "--epochs", "2", "--texture-weight", "3", "--calibration-scans", "0",
            "--pleural-fraction", "0.3"]
    assert run_cli(["train-detection", *args], capsys)[0] == 0
    assert run_cli(["train", "detection", *args], capsys)[0] == 0
    assert len(calls) == 2 and calls[0] == calls[1]
    assert (calls[0]["epochs"], calls[0]["texture_weight"], calls[0]["threads"]) == (2, 3.0, 1)
    assert calls[0]["pleural_fraction"] == 0.3
    assert run_cli(["train", "detection", *args[:-1], "1.5"], capsys)[0] == 2  # a share, at most 1


@pytest.mark.parametrize("command", [["evaluate", "follow-up"], ["evaluate-follow-up"]])
def test_evaluate_follow_up_runs_under_its_new_and_its_old_name(command: list[str], tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    from lungai.evaluation import follow_up_eval

    calls: list[tuple[object, ...]] = []

    def evaluate(*args: object) -> dict:
        calls.append(args)
        return {"overall": {"num_pairs": 2, "pairs_without_results": [], "num_nodules_both_scans": 3, "num_new": 1,
                            "num_resolved": 0},
                "targets": [{"passed": True, "value": 0.1, "description": "median", "op": "<=", "limit": 0.2}]}
    monkeypatch.setattr(follow_up_eval, "evaluate_follow_up", evaluate)
    code, stdout, err = run_cli([*command, "--pairs", str(tmp_path), "--results", str(tmp_path), "--split", "tune",
                                 "-o", str(tmp_path / "e.json")], capsys)
    assert code == 0, err
    assert calls == [(tmp_path, tmp_path, tmp_path / "e.json", "tune")]
    assert stdout.splitlines()[0] == "2 tune pairs (0 without results), 3 nodules on both scans, 1 new, 0 resolved"
    assert stdout.splitlines()[1].startswith("PASS  median: 0.100")
