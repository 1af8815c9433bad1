"""An analysis job: which files and results it keeps for each way a run can end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from fake_process import FakeProcess, event_line

from lungai.slicer.job import AnalysisJob
from lungai.slicer.run_folder import RunFolder
from lungai.slicer.runner import RunOutcome, RunStatus

DONE = event_line("done", index=1, total=1, fraction=1.0)


class Loader:
    """Records the folders it is asked to load; fails when told to."""

    def __init__(self, error: Exception | None = None) -> None:
        self.loaded: list[Path] = []
        self.error = error

    def __call__(self, output: Path) -> str:
        self.loaded.append(output)
        if self.error is not None:
            raise self.error
        return "results"


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    run_folder = RunFolder.create(tmp_path / "LungAI", "CT")
    run_folder.scan.write_bytes(b"exported scan")
    return run_folder


def start_job(folder: RunFolder, process: FakeProcess, load: Loader) -> AnalysisJob:
    def launch(command: Sequence[str]) -> FakeProcess:
        return process

    job = AnalysisJob(folder, ["lungai", "run"], load, launcher=launch)
    job.start()
    return job


def finish(process: FakeProcess, folder: RunFolder) -> None:
    folder.output.mkdir()
    (folder.output / "findings.json").write_text("{}")
    process.feed([DONE])
    process.code = 0


def test_a_successful_run_is_loaded_and_its_outputs_kept(folder: RunFolder) -> None:
    process, load = FakeProcess(), Loader()
    job = start_job(folder, process, load)
    assert job.poll() is None
    finish(process, folder)
    ended = job.poll()
    assert ended == (RunOutcome(RunStatus.SUCCEEDED, 0, output=folder.output), "results")
    assert load.loaded == [folder.output]
    assert not folder.scan.exists() and (folder.output / "findings.json").is_file()
    assert job.poll() is ended and load.loaded == [folder.output]


def test_outputs_that_cannot_be_loaded_fail_the_run_and_are_removed(folder: RunFolder) -> None:
    process, load = FakeProcess(), Loader(FileNotFoundError("results holds no findings.json"))
    job = start_job(folder, process, load)
    finish(process, folder)
    assert job.poll() == (RunOutcome(RunStatus.FAILED, 0, "the results could not be loaded "
                                                          "(results holds no findings.json)"), None)
    assert not folder.root.exists()


def test_a_failed_run_leaves_no_files(folder: RunFolder) -> None:
    process, load = FakeProcess(), Loader()
    job = start_job(folder, process, load)
    process.feed([event_line("error", message="no lungs found in CT.nrrd", data={"exit_code": 7})])
    process.code = 7
    assert job.poll() == (RunOutcome(RunStatus.FAILED, 7, "no lungs found in CT.nrrd"), None)
    assert load.loaded == [] and not folder.root.exists()


def test_error_messages_name_the_volume_not_the_exported_file(folder: RunFolder) -> None:
    process = FakeProcess()
    job = AnalysisJob(folder, ["lungai", "run"], Loader(), launcher=lambda command: process, input_name="CT chest")
    job.start()
    process.feed([event_line("error", message=f"{folder.scan} has only 2 slices (at least 10 needed)",
                             data={"exit_code": 5})])
    process.code = 5
    outcome, _ = job.poll()  # type: ignore[misc]
    assert outcome.message == "'CT chest' has only 2 slices (at least 10 needed)"


def test_a_cancelled_run_loads_nothing_and_leaves_no_files(folder: RunFolder) -> None:
    process, load = FakeProcess(), Loader()
    job = start_job(folder, process, load)
    job.cancel()
    assert process.interrupts == 1
    assert job.poll() == (RunOutcome(RunStatus.CANCELLED, 130), None)
    assert load.loaded == [] and not folder.root.exists()


def test_cancel_immediately_kills_and_removes_the_files_at_once(folder: RunFolder) -> None:
    process, load = FakeProcess(), Loader()
    job = start_job(folder, process, load)
    job.cancel(immediately=True)
    assert process.kills == 1 and not folder.root.exists()


def test_a_process_that_cannot_start_leaves_no_files(folder: RunFolder) -> None:
    def launch(command: Sequence[str]) -> FakeProcess:
        raise PermissionError(13, "Permission denied", command[0])

    job = AnalysisJob(folder, ["PythonSlicer"], Loader(), launcher=launch)
    job.start()
    outcome, results = job.poll()  # type: ignore[misc]
    assert (outcome.status, outcome.message, results) == (
        RunStatus.FAILED, "cannot start PythonSlicer (Permission denied)", None)
    assert not folder.root.exists()
