"""``lungai batch`` end to end on a real LocalCluster (2 worker processes, 1 thread each).

One batch of five small scans (three phantom chests in NRRD, NIfTI and DICOM; a corrupt file; a
scan without lungs) runs once for the module; the tests read its outputs, then rerun it to resume.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk
from batch_scans import TASK_ARGS, write_garbage, write_phantom
from cli_runner import run_cli
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai.batch.cohort import COHORT_COLUMNS, COHORT_NODULE_COLUMNS
from lungai.errors import CasesFailedError, NoLungsFoundError, UnreadableInputError

ENGINE_ARGS = ["--workers", "2", "--threads-per-worker", "1"]


def run_batch_process(args: list[str]) -> tuple[int, list[dict[str, Any]], str]:
    """``lungai batch ARGS --progress jsonl`` in a new process: exit code, events, stderr."""
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "batch", *args, "--progress", "jsonl"],
                            capture_output=True, text=True, timeout=240, check=False)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    write_phantom(root / "nrrd" / "chest_a.nrrd", seed=1)
    write_phantom(root / "nifti" / "chest_b.nii.gz", seed=2)
    dicom_source = write_phantom(root.parent / "chest_c.nrrd", seed=3)
    write_dicom_series(root / "dicom", sitk.GetArrayFromImage(sitk.ReadImage(str(dicom_source))),
                       spacing=(3.0, 3.0, 5.0), PatientID="C3", StudyDate="20200101", SeriesNumber=1)
    write_garbage(root / "bad" / "corrupt.nii.gz")
    write_image(box_phantom(shape=(30, 64, 64)), root / "bad" / "no_lungs.nrrd", spacing=(3.0, 3.0, 5.0))
    return root


@pytest.fixture(scope="module")
def first_batch(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("batch") / "out"
    code, events, stderr = run_batch_process([str(tree), "-o", str(out), *TASK_ARGS, *ENGINE_ARGS])
    assert out.is_dir(), stderr
    return out, code, events


def cohort_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "cohort.csv").open(newline="") as stream:
        return {row["case_id"]: row for row in csv.DictReader(stream)}


def manifest_entries(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_bad_scans_fail_with_their_codes_and_the_batch_goes_on(first_batch) -> None:
    out, code, _ = first_batch
    assert code == CasesFailedError.exit_code
    rows = cohort_rows(out)
    assert list(next(csv.reader((out / "cohort.csv").open()))) == list(COHORT_COLUMNS)
    assert {case: row["status"] for case, row in rows.items()} == {
        "chest_a": "done", "chest_b": "done", "C3_20200101_1": "done", "corrupt": "failed", "no_lungs": "failed"}
    assert rows["corrupt"]["exit_code"] == str(UnreadableInputError.exit_code)
    assert rows["no_lungs"]["exit_code"] == str(NoLungsFoundError.exit_code)
    assert all(rows[case]["error"] and "\n" not in rows[case]["error"] for case in ("corrupt", "no_lungs"))
    for case in ("chest_a", "chest_b", "C3_20200101_1"):
        assert 1500 < float(rows[case]["lung_volume_total_ml"]) < 4000
        assert rows[case]["laa_950_percent"] and rows[case]["emphysema_probability"] and rows[case]["worker"]
        assert (out / case / "findings.json").exists() and (out / case / "report.html").exists()
    assert (out / "C3_20200101_1" / "C3_20200101_1.seg.dcm").exists()
    assert not (out / "corrupt").exists() and not list(out.glob(".lungai-tmp-*"))
    assert list(next(csv.reader((out / "cohort_nodules.csv").open()))) == list(COHORT_NODULE_COLUMNS)


def test_models_load_once_per_worker_process(first_batch) -> None:
    out, _, _ = first_batch
    loads: dict[str, int] = defaultdict(int)
    for entry in manifest_entries(out):
        loads[entry["worker"]] += entry["models_loaded"]
    assert sum(1 for entry in manifest_entries(out) if entry["status"] == "done") == 3
    assert all(count == 1 for count in loads.values()), loads  # convlstm_scanner once per worker, 5 cases
    assert len(loads) <= 2


def test_batch_json_records_settings_counts_and_weights(first_batch) -> None:
    out, _, _ = first_batch
    info = json.loads((out / "batch.json").read_text())
    assert info["counts"] == {"total": 5, "done": 3, "failed": 2, "pending": 0}
    assert info["settings"]["tasks"] == ["lungs", "emphysema"] and info["engine"]["workers"] == 2
    assert [w["name"] for w in info["weights"]] == ["convlstm_scanner"]
    assert info["started_utc"] <= info["finished_utc"] and info["lungai_version"]


def test_cohort_html_summarises_the_batch(first_batch) -> None:
    out, _, _ = first_batch
    page = (out / "cohort.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2  # lung volume and LAA-950; no nodules task
    assert "<script" not in page and "LungAI cohort summary" in page
    assert all(f"<td>{case}</td>" in page for case in ("corrupt", "no_lungs", "chest_a"))
    assert json.loads((out / "batch.json").read_text())["finished_utc"] in page


def test_jsonl_progress_has_one_event_per_case_start_and_end(first_batch) -> None:
    _, _, events = first_batch
    assert events[0]["event"] == "start" and events[0]["data"]["to_run"] == 5
    assert events[-1]["event"] == "done" and events[-1]["data"]["failed"] == 2
    cases = [event for event in events if event["event"] == "case"]
    started = sorted(event["data"]["case_id"] for event in cases if event["status"] == "started")
    ended = sorted(event["data"]["case_id"] for event in cases if event["status"] in ("done", "failed"))
    assert started == ended and len(ended) == 5


def test_findings_equal_those_of_lungai_run(first_batch, tree: Path, tmp_path: Path, capsys) -> None:
    out, _, _ = first_batch
    single = tmp_path / "single"
    code, _, _ = run_cli(["run", str(tree / "nrrd" / "chest_a.nrrd"), "-o", str(single), *TASK_ARGS,
                          "--progress", "none"], capsys)
    assert code == 0
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in (out / "chest_a").iterdir())

    def comparable(path: Path) -> dict[str, Any]:
        findings = json.loads(path.read_text())
        for key in ("started_utc", "finished_utc", "timings_s"):
            findings["run"].pop(key)
        findings["provenance"].pop("command")
        return findings

    assert comparable(out / "chest_a" / "findings.json") == comparable(single / "findings.json")


def test_rerun_skips_done_cases_redoes_changed_ones_and_retries_failed_on_request(first_batch, tree: Path) -> None:
    out, _, _ = first_batch
    changed = tree / "nifti" / "chest_b.nii.gz"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    code, events, _ = run_batch_process([str(tree), "-o", str(out), *TASK_ARGS, *ENGINE_ARGS])
    assert code == CasesFailedError.exit_code
    assert events[0]["data"] == {"output": str(out), "cases": 5, "to_run": 1, "skipped": 4}
    assert [e["data"]["case_id"] for e in events if e["event"] == "case" and e["status"] == "done"] == ["chest_b"]

    code, events, _ = run_batch_process([str(tree), "-o", str(out), *TASK_ARGS, *ENGINE_ARGS, "--retry-failed"])
    assert code == CasesFailedError.exit_code and events[0]["data"]["to_run"] == 2
    rows = cohort_rows(out)
    assert len(rows) == 5 and [case for case, row in rows.items() if row["status"] == "done"] == [
        "C3_20200101_1", "chest_a", "chest_b"]

    code, events, _ = run_batch_process([str(tree), "-o", str(out), "--tasks", "lungs", "--device", "cpu",
                                         *ENGINE_ARGS])
    assert events[0]["data"]["to_run"] == 5  # other settings: every case again


def test_local_workers_share_the_cores_among_their_case_slots() -> None:
    from lungai.batch.engine import EngineOptions, dask_client, native_threads_env

    cores = os.cpu_count() or 1
    assert native_threads_env(1, 1)["OMP_NUM_THREADS"] == cores
    assert native_threads_env(cores, 1)["OMP_NUM_THREADS"] == 1
    assert native_threads_env(4 * cores, 2)["OMP_NUM_THREADS"] == 1
    with dask_client(EngineOptions(workers=1, threads_per_worker=1)) as client:
        threads = client.run(lambda: __import__("torch").get_num_threads())
    assert list(threads.values()) == [cores]
