"""The console: each warning once, ``-q`` quiet, progress inside a stage, run.log naming the final folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import SimpleITK as sitk
from cli_runner import run_cli

from lungai.cli.console import setup_logging, warnings_after_results
from lungai.data.phantom import make_phantom

THICK_SLICES = "slices are 5.0 mm thick"


@pytest.fixture(scope="module")
def thick_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom with 5 mm slices: the emphysema densitometry warns about them."""
    image = make_phantom().image
    image.SetSpacing((*image.GetSpacing()[:2], 5.0))
    path = tmp_path_factory.mktemp("thick") / "thick chest.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def run_args(scan: Path, output: Path, *extra: str) -> list[str]:
    return [*extra, "run", str(scan), "-o", str(output), "--tasks", "lungs,emphysema", "--device", "cpu"]


def test_a_warning_is_printed_once(thick_scan: Path, tmp_path: Path, capsys) -> None:
    code, stdout, stderr = run_cli(run_args(thick_scan, tmp_path / "o"), capsys)
    assert code == 0
    assert (stdout + stderr).count(THICK_SLICES) == 1
    assert f"Warning: emphysema densitometry: {THICK_SLICES}" in stdout
    assert "emphysema started" in stderr, "the progress bar is on by default"


def test_quiet_prints_only_the_results(thick_scan: Path, tmp_path: Path, capsys) -> None:
    code, stdout, stderr = run_cli(run_args(thick_scan, tmp_path / "o", "-q"), capsys)
    assert code == 0 and stderr == ""
    assert stdout.count(THICK_SLICES) == 1 and "Outputs in" in stdout


def test_run_log_names_the_output_folder_not_the_staging_folder(thick_scan: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "o"
    assert run_cli(run_args(thick_scan, output, "-q"), capsys)[0] == 0
    log = (output / "run.log").read_text()
    assert f"wrote {output.absolute() / 'findings.json'}" in log
    assert ".lungai-tmp-" not in log


@pytest.mark.slow
def test_progress_inside_the_nodules_stage(tmp_path: Path, capsys) -> None:
    scan = tmp_path / "phantom.nrrd"
    sitk.WriteImage(make_phantom().image, str(scan))
    code, stdout, _ = run_cli(["run", str(scan), "-o", str(tmp_path / "o"), "--tasks", "nodules", "--device", "cpu",
                               "--progress", "jsonl"], capsys)
    events = [json.loads(line) for line in stdout.splitlines()]
    steps = [e["message"] for e in events if e["stage"] == "nodules" and e["status"] == "running"]
    assert code == 0
    assert steps[0] == "finding the lesion search region and masses"
    assert any(step.startswith("scoring ") and step.endswith(" candidates") for step in steps)
    assert any(step.startswith("segmenting ") for step in steps)
    segmented = [step for step in steps if step.startswith("segmented ")]
    assert segmented and segmented[-1].endswith(" detections")  # the last one: no time left to estimate
    if len(segmented) > 1:
        assert " s left" in segmented[0]
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions)


def test_the_time_left_is_the_pace_so_far() -> None:
    from lungai.pipeline.stages import _time_left

    assert _time_left(10.0, 2, 6) == ", about 20 s left"
    assert _time_left(10.0, 6, 6) == ""
    assert _time_left(0.0, 0, 6) == ""


def test_held_warnings_are_printed_when_the_run_fails(capsys) -> None:
    setup_logging(verbose=0, quiet=False)
    logger = logging.getLogger("lungai.test")
    with pytest.raises(RuntimeError), warnings_after_results(hold=True):
        logger.warning("first")
        logger.warning("first")
        assert capsys.readouterr().err == "", "held back while the run works"
        raise RuntimeError("the run failed")
    assert capsys.readouterr().err.splitlines() == ["WARNING lungai.test: first"]


def test_warnings_the_results_showed_are_not_repeated(capsys) -> None:
    setup_logging(verbose=0, quiet=False)
    logger = logging.getLogger("lungai.test")
    with warnings_after_results(hold=True) as held:
        logger.warning("in the findings (continuing because of --force)")
        logger.warning("only in the log")
    held.release(["in the findings"])
    assert capsys.readouterr().err.splitlines() == ["WARNING lungai.test: only in the log"]
