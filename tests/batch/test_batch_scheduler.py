"""``lungai batch --scheduler``: the same batch on an existing Dask cluster (a real ``dask scheduler``
and ``dask worker`` started here as processes on localhost)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_scans import TASK_ARGS, write_phantom

DASK = Path(sys.executable).with_name("dask")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(DASK), *args], stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture()
def scheduler(tmp_path: Path) -> Iterator[str]:
    """The address of a running scheduler with one worker process (1 thread)."""
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed beside {sys.executable}")
    info = tmp_path / "scheduler.json"
    processes = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(info)], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert info.exists(), (tmp_path / "scheduler.log").read_text()
        processes.append(_start(["worker", "--scheduler-file", str(info), "--nworkers", "1", "--nthreads", "1",
                                 "--no-dashboard"], tmp_path / "worker.log"))
        yield json.loads(info.read_text())["address"]
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


def test_a_batch_runs_on_an_existing_scheduler(scheduler: str, tmp_path: Path) -> None:
    scans = [write_phantom(tmp_path / "scans" / f"chest_{seed}.nrrd", seed=seed) for seed in range(2)]
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "batch", str(scans[0].parent), "-o", str(out),
                             *TASK_ARGS, "--scheduler", scheduler, "--progress", "none"],
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    with (out / "cohort.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["case_id"], row["status"]) for row in rows] == [("chest_0", "done"), ("chest_1", "done")]
    assert json.loads((out / "batch.json").read_text())["engine"]["scheduler"] == scheduler
