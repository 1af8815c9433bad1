"""Faults on a real LocalCluster: the client killed midway (SIGKILL) and resumed; a worker killed mid-case."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
import pytest
from batch_scans import TASK_ARGS, write_phantom

from lungai.errors import CasesFailedError, ResourceError


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    for seed in range(5):
        write_phantom(folder / f"chest_{seed}.nrrd", seed=seed)
    return folder


def start_batch(scans: Path, out: Path, workers: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lungai.cli", "batch", str(scans), "-o", str(out), *TASK_ARGS,
                             "--workers", str(workers), "--progress", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def events_until(process: subprocess.Popen, wanted) -> dict:
    """Read the batch's events until one satisfies ``wanted``; return it."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event and wanted(event):
            return event
    raise AssertionError("the batch ended before the awaited event")


def assert_complete(out: Path) -> None:
    """Every case done once in the manifest, in cohort.csv, and no staging folder left."""
    with (out / "cohort.csv").open(newline="") as stream:
        assert [row["status"] for row in csv.DictReader(stream)] == ["done"] * 5
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert Counter(entry["case_id"] for entry in entries if entry["status"] == "done") == {
        f"chest_{seed}": 1 for seed in range(5)}
    assert not list(out.glob(".lungai-*"))


def test_killing_the_client_midway_then_rerunning_does_every_case_once(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_batch(scans, out, workers=1)
    events_until(process, lambda event: event["event"] == "case" and event["index"] == 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    rerun = start_batch(scans, out, workers=1)
    start = events_until(rerun, lambda event: event["event"] == "start")
    rest = [json.loads(line) for line in rerun.stdout if line.startswith("{")]
    assert rerun.wait(timeout=240) == 0, rest
    assert 2 <= start["data"]["skipped"] < 5, start
    assert_complete(out)


def test_a_case_whose_worker_is_killed_is_retried_on_a_new_worker(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_batch(scans, out, workers=1)
    started = events_until(process, lambda event: event["event"] == "case" and event["status"] == "started")
    workers = [child for child in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(child.cmdline())]
    assert len(workers) == 1
    os.kill(workers[0].pid, signal.SIGKILL)
    rest = [json.loads(line) for line in process.stdout if line.startswith("{")]
    assert process.wait(timeout=240) == 0
    assert_complete(out)
    starts = Counter(event["data"]["case_id"] for event in rest if event["status"] == "started")
    assert starts[started["data"]["case_id"]] == 1  # started again, after the one already read
    assert all(count == 1 for count in starts.values())


def test_a_case_that_keeps_killing_workers_fails_after_the_retries(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "batch", str(scans / "chest_0.nrrd"), "-o", str(out),
                             *TASK_ARGS, "--workers", "1", "--memory-limit", "250MiB", "--progress", "none"],
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == CasesFailedError.exit_code
    with (out / "cohort.csv").open(newline="") as stream:
        [row] = list(csv.DictReader(stream))
    assert row["status"] == "failed" and row["exit_code"] == str(ResourceError.exit_code)
    assert "every worker that ran this case died (4 tries)" in row["error"]


def test_sigterm_keeps_the_cases_that_ended_and_leaves_nothing_half_written(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "lungai.cli", "batch", str(scans), "-o", str(out), *TASK_ARGS,
                                "--workers", "1", "--progress", "jsonl"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events_until(process, lambda event: event["event"] == "case" and event["index"] == 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "error: stopped by SIGTERM; the cases that ended are kept in" in stderr
    with (out / "cohort.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert 1 <= len(rows) < 5 and all(row["status"] == "done" for row in rows)
    folders = {path.name for path in out.iterdir() if path.is_dir()}
    assert {row["case_id"] for row in rows} <= folders  # a case may end while the batch stops, unrecorded
    assert all((out / name / "findings.json").exists() for name in folders)  # every folder complete
    assert not list(out.glob(".lungai-*"))
