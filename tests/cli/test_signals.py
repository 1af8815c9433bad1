"""SIGTERM and SIGHUP stop ``lungai run`` like Ctrl-C: one error line, a documented code, nothing left behind.

Each test starts a real ``lungai run`` in a child process on a small synthetic chest CT, waits
until a stage has started (its ``--progress jsonl`` events on stdout), sends the signal and
checks the exit code, stderr and the output location.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from lungai.data.phantom import make_phantom
from lungai.errors import EXIT_CODES, SIGNAL_EXIT_CODES

STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signal_scan") / "chest.nrrd"
    sitk.WriteImage(make_phantom().image, str(path))
    return path


def start_run(scan: Path, output: Path) -> subprocess.Popen[str]:
    """``lungai run`` in a child process, its progress as JSON lines on stdout."""
    return subprocess.Popen([sys.executable, "-m", "lungai.cli", "run", str(scan), "-o", str(output),
                             "--tasks", "lungs,emphysema", "--device", "cpu", "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_stage(process: subprocess.Popen[str], stage: str) -> None:
    """Read progress events until ``stage`` has started."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "stage" and event["stage"] == stage and event["status"] == "started":
            return
        assert time.monotonic() < deadline, f"the run did not reach the {stage} stage in time"
    pytest.fail(f"the run ended before the {stage} stage: {process.stderr.read() if process.stderr else ''}")


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_leaves_nothing_behind(chest: Path, tmp_path: Path, name: str) -> None:
    output = tmp_path / "results" / "run1"
    process = start_run(chest, output)
    try:
        wait_for_stage(process, "lungs")
        assert list(tmp_path.glob(".lungai-tmp-*")), "the run stages its outputs while it works"
        process.send_signal(getattr(signal, name))
        _, stderr = process.communicate(timeout=STARTUP_TIMEOUT_S)
    finally:
        process.kill()
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == SIGNAL_EXIT_CODES[name] == 128 + getattr(signal, name)
    assert errors == [f"error: stopped by {name}; no output was written"], stderr
    assert not output.exists() and not list(tmp_path.rglob(".lungai-*")), "outputs or staging left behind"


def test_signal_exit_codes_are_documented() -> None:
    for name, code in SIGNAL_EXIT_CODES.items():
        assert name in EXIT_CODES[code]
