"""The run protocol with an injected fake process, and with real processes on POSIX."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import SimpleITK as sitk
from fake_process import FakeProcess, event_line

from lungai.data.phantom import PhantomConfig, make_phantom
from lungai.slicer.command import RunRequest, build_run_command
from lungai.slicer.process import BackgroundProcess
from lungai.slicer.progress import ProgressUpdate
from lungai.slicer.runner import CliRun, RunOutcome, RunStatus, failure_message

OUTPUT = Path("/runs/1/results")


START = event_line("start", total=2, data={"output": str(OUTPUT)})
STAGE_LINES = [event_line("stage", stage="read", status="started", index=1, total=2),
               event_line("stage", stage="read", status="finished", index=1, total=2, fraction=0.5),
               event_line("stage", stage="write", status="finished", index=2, total=2, fraction=1.0)]
DONE = event_line("done", index=2, total=2, fraction=1.0, data={"output": str(OUTPUT)})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_run(process: FakeProcess, **options: object) -> tuple[CliRun, list[ProgressUpdate], list[list[str]]]:
    updates: list[ProgressUpdate] = []
    commands: list[list[str]] = []

    def launch(command: Sequence[str]) -> FakeProcess:
        commands.append(list(command))
        return process

    run = CliRun(["python", "-m", "lungai.cli", "run"], OUTPUT, launcher=launch, on_progress=updates.append,
                 **options)  # type: ignore[arg-type]
    run.start()
    return run, updates, commands


def test_a_successful_run_reports_progress_then_its_output() -> None:
    process = FakeProcess()
    run, updates, commands = make_run(process)
    assert commands == [["python", "-m", "lungai.cli", "run"]]
    assert run.running
    process.feed([START, *STAGE_LINES[:2]])
    assert run.poll() is None
    assert [update.label for update in updates] == ["Starting", "Reading the scan (1/2)", "Reading the scan done (1/2)"]
    process.feed([STAGE_LINES[2], DONE])
    process.code = 0
    outcome = run.poll()
    assert outcome == RunOutcome(RunStatus.SUCCEEDED, 0, output=OUTPUT)
    assert outcome.succeeded and not run.running
    assert [update.fraction for update in updates] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert run.poll() is outcome


def test_lines_written_just_before_the_exit_are_not_lost() -> None:
    process = FakeProcess()
    run, updates, _ = make_run(process)
    process.feed([START, *STAGE_LINES, DONE], ["INFO lungai: outputs written"])
    process.code = 0
    assert run.poll() == RunOutcome(RunStatus.SUCCEEDED, 0, output=OUTPUT)
    assert updates[-1].event == "done"
    assert run.stderr_tail == ["INFO lungai: outputs written"]


def test_stray_stdout_lines_do_not_disturb_the_run() -> None:
    process = FakeProcess()
    run, updates, _ = make_run(process)
    process.feed([START, "a library printed this", "", DONE])
    process.code = 0
    assert run.poll().succeeded  # type: ignore[union-attr]
    assert [update.event for update in updates] == ["start", "done"]


def test_the_error_event_gives_the_message() -> None:
    process = FakeProcess()
    run, updates, _ = make_run(process)
    message = "no lungs found in scan.nrrd; check that the scan is a chest CT"
    process.feed([START, event_line("error", message=message, data={"exit_code": 7})], [f"error: {message}"])
    process.code = 7
    assert run.poll() == RunOutcome(RunStatus.FAILED, 7, message)
    assert updates[-1].label == "Failed"


@pytest.mark.parametrize(("stderr", "code", "message"), [
    (["Traceback ...", "error: input scan.nrrd does not exist; check the path"], 3,
     "input scan.nrrd does not exist; check the path"),
    (["Usage: lungai run [OPTIONS] SCAN", "Error: Invalid value for '--tasks': unknown task(s) x"], 2,
     "Invalid value for '--tasks': unknown task(s) x"),
    ([], 10, "lungai stopped with exit code 10: model weights missing or failed verification"),
    ([], 77, "lungai stopped with exit code 77: unknown error; see the log for details"),
])
def test_without_an_error_event_the_message_comes_from_stderr_or_the_exit_code(
        stderr: list[str], code: int, message: str) -> None:
    process = FakeProcess()
    run, _, _ = make_run(process)
    process.feed([START], stderr)
    process.code = code
    assert run.poll() == RunOutcome(RunStatus.FAILED, code, message)


def test_a_process_ended_by_a_signal_says_so() -> None:
    message = failure_message(-9, None, [])
    assert message.startswith("lungai was ended by signal 9")
    assert "\n" not in message


def test_exit_code_zero_without_done_is_a_failure() -> None:
    process = FakeProcess()
    run, _, _ = make_run(process)
    process.feed([START])
    process.code = 0
    outcome = run.poll()
    assert outcome is not None and outcome.status is RunStatus.FAILED
    assert "without reporting its results" in outcome.message


def test_cancel_interrupts_and_reports_cancelled() -> None:
    process = FakeProcess()
    run, _, _ = make_run(process)
    process.feed([START])
    run.cancel()
    run.cancel()  # a second click changes nothing
    assert (process.interrupts, process.kills) == (1, 0)
    assert run.poll() == RunOutcome(RunStatus.CANCELLED, 130)
    run.cancel()  # after the end: nothing to do
    assert process.interrupts == 1


def test_a_process_that_ignores_the_interrupt_is_killed_after_the_grace_period() -> None:
    process = FakeProcess(obeys_interrupt=False)
    clock = Clock()
    run, _, _ = make_run(process, clock=clock, grace_s=3.0)
    run.cancel()
    clock.now += 2.9
    assert run.poll() is None
    assert process.kills == 0
    clock.now += 0.2
    assert run.poll() is None  # killed now; the exit is seen on the next poll
    assert process.kills == 1
    assert run.poll() == RunOutcome(RunStatus.CANCELLED, -9)
    assert process.kills == 1


def test_cancel_immediately_kills_without_interrupting() -> None:
    process = FakeProcess()
    run, _, _ = make_run(process)
    run.cancel(immediately=True)
    assert (process.interrupts, process.kills) == (0, 1)
    assert run.poll() == RunOutcome(RunStatus.CANCELLED, -9)


def test_a_program_that_cannot_start_fails_at_once() -> None:
    def launch(command: Sequence[str]) -> FakeProcess:
        raise FileNotFoundError(2, "No such file or directory", command[0])

    run = CliRun(["/missing/PythonSlicer", "-m", "lungai.cli"], OUTPUT, launcher=launch)
    run.start()
    assert not run.running
    outcome = run.poll()
    assert outcome == RunOutcome(RunStatus.FAILED, None,
                                 "cannot start /missing/PythonSlicer (No such file or directory)")
    run.cancel()  # nothing to cancel
    with pytest.raises(RuntimeError, match="started already"):
        run.start()


def test_poll_before_start_reports_nothing() -> None:
    run = CliRun(["lungai"], OUTPUT, launcher=lambda command: FakeProcess())
    assert run.poll() is None and not run.running


# Real processes --------------------------------------------------------------------------------

posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups and /proc checks are POSIX")


def wait_for(run: CliRun, timeout_s: float = 30.0) -> RunOutcome:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = run.poll()
        if outcome is not None:
            return outcome
        time.sleep(0.02)
    run.cancel(immediately=True)
    raise AssertionError(f"the run did not end within {timeout_s} s")


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def phantom_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "phantom chest.nrrd"
    sitk.WriteImage(make_phantom(PhantomConfig(size=(96, 96, 50), spacing_mm=(3.0, 3.0, 5.0))).image, str(path))
    return path


@posix_only
def test_the_real_command_line_runs_to_success(phantom_scan: Path, tmp_path: Path) -> None:
    request = RunRequest(scan=phantom_scan, output=tmp_path / "results", tasks=("lungs", "emphysema"), device="cpu")
    updates: list[ProgressUpdate] = []
    run = CliRun(build_run_command(sys.executable, request), request.output, on_progress=updates.append)
    run.start()
    outcome = wait_for(run)
    assert outcome == RunOutcome(RunStatus.SUCCEEDED, 0, output=request.output), run.stderr_tail
    assert [update.label for update in updates if update.status != "finished"] == [
        "Starting", "Reading the scan (1/4)", "Lungs (2/4)", "Emphysema (3/4)", "Writing results (4/4)", "Done"]
    assert (request.output / "phantom chest.seg.nrrd").is_file()


@posix_only
def test_the_real_command_line_error_is_one_line(tmp_path: Path) -> None:
    request = RunRequest(scan=tmp_path / "missing.nrrd", output=tmp_path / "results", tasks=("lungs",))
    run = CliRun(build_run_command(sys.executable, request), request.output)
    run.start()
    outcome = wait_for(run)
    assert outcome == RunOutcome(RunStatus.FAILED, 3, f"input {request.scan} does not exist; check the path")
    assert not request.output.exists()


CHILD_SCRIPT = """
    import pathlib, signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == "stubborn" else signal.default_int_handler)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"])
    written = pathlib.Path(sys.argv[2] + ".part")
    written.write_text(str(child.pid))
    written.rename(sys.argv[2])
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        child.kill()
        sys.exit(130)
"""


def start_tree(behaviour: str, grace_s: float, folder: Path) -> tuple[CliRun, int]:
    """Start a process that starts a child; return the run and the child's pid."""
    pid_file = folder / "child.pid"
    command = [sys.executable, "-c", textwrap.dedent(CHILD_SCRIPT), behaviour, str(pid_file)]
    run = CliRun(command, OUTPUT, launcher=BackgroundProcess, grace_s=grace_s)
    run.start()
    deadline = time.monotonic() + 20
    while not pid_file.is_file() and time.monotonic() < deadline:
        assert run.poll() is None
        time.sleep(0.02)
    return run, int(pid_file.read_text())


@posix_only
def test_cancel_lets_the_process_clean_up_and_ends_the_tree(tmp_path: Path) -> None:
    run, child = start_tree("obliging", grace_s=10.0, folder=tmp_path)
    assert alive(child)
    started = time.monotonic()
    run.cancel()
    assert wait_for(run) == RunOutcome(RunStatus.CANCELLED, 130)
    assert time.monotonic() - started < 5.0
    assert_ends(child)


@posix_only
def test_cancel_kills_a_tree_that_ignores_the_interrupt(tmp_path: Path) -> None:
    run, child = start_tree("stubborn", grace_s=0.3, folder=tmp_path)
    run.cancel()
    outcome = wait_for(run)
    assert outcome.status is RunStatus.CANCELLED and outcome.exit_code == -9
    assert_ends(child)


def assert_ends(pid: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid), f"process {pid} survived the cancel"
