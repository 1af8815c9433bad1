"""The command line the Slicer module runs, the device and task choices, and the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungai.cli.main import cli
from lungai.pipeline.availability import tasks_with_weights
from lungai.pipeline.config import ALL_TASKS
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.slicer.command import (
    DEFAULT_MIN_DETECTION_SCORE,
    DEVICE_CHOICES,
    LOWEST_DETECTION_SCORE,
    RunRequest,
    build_run_command,
    device_argument,
    selected_tasks,
    task_availability,
)
from lungai.slicer.run_folder import RunFolder, safe_stem
from lungai.weights.manifest import Manifest, read_manifest


def test_the_command_runs_the_cli_module_with_jsonl_progress(tmp_path: Path) -> None:
    request = RunRequest(scan=tmp_path / "in put" / "CT chest.nrrd", output=tmp_path / "results",
                         tasks=("emphysema", "lungs"), device="cuda")
    assert build_run_command("/opt/Slicer/bin/PythonSlicer", request) == [
        "/opt/Slicer/bin/PythonSlicer", "-m", "lungai.cli", "run", str(request.scan), "-o", str(request.output),
        "--tasks", "lungs,emphysema", "--device", "cuda", "--sensitivity", "high", "--progress", "jsonl"]


def test_runs_write_every_nodule_the_slider_can_show() -> None:
    assert LOWEST_DETECTION_SCORE == OPERATING_POINTS["high"].threshold
    assert LOWEST_DETECTION_SCORE <= DEFAULT_MIN_DETECTION_SCORE == OPERATING_POINTS["balanced"].threshold


def test_every_option_of_the_command_is_one_the_cli_accepts(tmp_path: Path) -> None:
    command = build_run_command("python", RunRequest(scan=tmp_path / "s.nrrd", output=tmp_path / "o", tasks=("lungs",)))
    run_options = {name for param in cli.commands["run"].params for name in param.opts}
    used = [part for part in command[4:] if part.startswith("-")]
    assert set(used) <= run_options, set(used) - run_options


def test_no_task_means_lungs_only(tmp_path: Path) -> None:
    command = build_run_command("python", RunRequest(scan=tmp_path / "s.nrrd", output=tmp_path / "o", tasks=()))
    assert command[command.index("--tasks") + 1] == "lungs"


def test_an_unknown_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        build_run_command("python", RunRequest(scan=tmp_path / "s.nrrd", output=tmp_path / "o", tasks=("lobes",)))


@pytest.mark.parametrize(("choice", "platform", "argument"), [
    ("auto", "linux", "auto"), ("CPU", "win32", "cpu"), ("GPU", "linux", "cuda"), ("GPU", "win32", "cuda"),
    ("GPU", "darwin", "mps"),
])
def test_device_choices(choice: str, platform: str, argument: str) -> None:
    assert device_argument(choice, platform) == argument


def test_an_unknown_device_choice_is_refused() -> None:
    assert DEVICE_CHOICES == ("auto", "GPU", "CPU")
    with pytest.raises(ValueError, match="unknown device choice 'TPU'"):
        device_argument("TPU")


def test_task_availability_follows_the_installed_weights() -> None:
    availability = task_availability()
    assert list(availability) == list(ALL_TASKS)
    assert [task for task, available in availability.items() if available] == list(tasks_with_weights(read_manifest()))
    empty = task_availability(Manifest())
    assert empty["lungs"] and not empty["nodules"] and not empty["malignancy"]


def test_selected_tasks_keep_the_available_ones_in_pipeline_order() -> None:
    assert selected_tasks(["emphysema", "lungs"]) == ("lungs", "emphysema")
    assert selected_tasks(["nodules", "malignancy", "emphysema"], available=("lungs", "emphysema")) == ("emphysema",)
    assert selected_tasks(["malignancy"], available=("lungs",)) == ("lungs",)
    assert selected_tasks([]) == ("lungs",)


@pytest.mark.parametrize(("name", "stem"), [
    ("CT chest", "CT_chest"), ("3: CT chest/abdomen (contrast)", "3_CT_chest_abdomen_contrast"),
    ("LIDC-IDRI-0001", "LIDC-IDRI-0001"), ("..", "scan"), ("", "scan"), ("Thorax ÄÖ", "Thorax"),
])
def test_safe_stem(name: str, stem: str) -> None:
    assert safe_stem(name) == stem


def test_run_folder_layout_and_clean_up(tmp_path: Path) -> None:
    first = RunFolder.create(tmp_path / "LungAI", "CT chest")
    second = RunFolder.create(tmp_path / "LungAI", "CT chest")
    assert first.root != second.root
    assert first.root.parent == tmp_path / "LungAI" and "CT_chest" in first.root.name
    assert first.scan == first.root / "input" / "CT_chest.nrrd"
    assert first.scan.parent.is_dir() and not first.scan.exists()
    assert first.output == first.root / "results" and not first.output.exists()
    first.scan.write_bytes(b"scan")
    first.output.mkdir()
    first.remove_scan()
    assert not first.scan.parent.exists() and first.output.is_dir()
    first.discard()
    assert not first.root.exists() and second.root.is_dir()
