"""findings.json ``provenance``: the command, the operating point, limits, tasks and input fingerprints."""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
from pathlib import Path

import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from synthetic_scans import write_dicom_series

from lungai.data.phantom import make_phantom
from lungai.io import provenance
from lungai.io.findings import SCHEMA_VERSION, Centroid, Nodule, load_findings, write_nodules_csv
from lungai.pipeline.config import RunConfig
from lungai.pipeline.operating_points import operating_point
from lungai.pipeline.runner import run_pipeline


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def phantom() -> sitk.Image:
    return make_phantom().image


def test_api_run_records_the_call_and_both_files_of_a_detached_header(phantom: sitk.Image, tmp_path: Path) -> None:
    scan = tmp_path / "chest.nhdr"
    sitk.WriteImage(phantom, str(scan))
    data_files = [p for p in tmp_path.iterdir() if p != scan]
    output = tmp_path / "out"
    run_pipeline(RunConfig(input=scan, output=output, tasks=("lungs",), device="cpu", max_nodules=7))
    findings = load_findings(output / "findings.json")
    record = findings["provenance"]
    assert findings["schema_version"] == SCHEMA_VERSION == "2.2"
    assert record["command"] == (f"python API: run_pipeline(RunConfig(input='{scan}', output='{output}', "
                                 "tasks=('lungs',), device='cpu', max_nodules=7))")
    assert record["operating_point"] is record["threshold"] is record["expected_false_positives_per_scan"] is None
    assert record["max_nodules"] == 7 and record["tasks"] == ["lungs"]
    assert record["inputs"] == [
        {"path": str(path), "series_uid": None, "files": 1, "size_bytes": path.stat().st_size,
         "sha256": sha256(path.read_bytes()), "mtime_utc": None} for path in [scan, *data_files]]


def test_cli_run_records_the_command_line_and_the_dicom_series(phantom: sitk.Image, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "series"
    uid = write_dicom_series(folder, sitk.GetArrayFromImage(phantom), spacing=phantom.GetSpacing())
    output = tmp_path / "out dir"
    args = ["run", str(folder), "-o", str(output), "--tasks", "lungs", "--device", "cpu", "--progress", "none"]
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    record = load_findings(output / "findings.json")["provenance"]
    assert record["command"] == shlex.join(["lungai", *args])
    slices = sorted(folder.glob("*.dcm"))
    digests = "".join(f"{sha256(path.read_bytes())}\n" for path in slices)
    assert record["inputs"] == [{"path": str(folder), "series_uid": uid, "files": len(slices),
                                 "size_bytes": sum(path.stat().st_size for path in slices),
                                 "sha256": sha256(digests.encode()), "mtime_utc": None}]


def test_files_too_large_to_hash_are_fingerprinted_by_size_and_time(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "scan.nrrd"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(provenance, "HASH_LIMIT_BYTES", 10)
    record = provenance.file_fingerprint(path)
    assert record.sha256 is None and record.size_bytes == 100 and record.mtime_utc is not None
    assert record.mtime_utc.endswith("Z")


def test_findings_of_schema_2_0_still_read(tmp_path: Path) -> None:
    old = {"schema_version": "2.0", "input": {"source": "scan.nrrd"}, "nodules": [], "run": {"tasks": ["lungs"]}}
    (tmp_path / "findings.json").write_text(json.dumps(old))
    assert load_findings(tmp_path / "findings.json") == old


def test_nodules_csv_rounds_millimetres_and_hu(tmp_path: Path) -> None:
    image = sitk.Image([20, 20, 10], sitk.sitkInt16)
    nodule = Nodule(id=1, centroid=Centroid.from_lps((7.123456789, -15.98765, -90.04999), image),
                    long_axis_mm=8.2449, short_axis_mm=6.1, volume_mm3=212.3456, mean_hu=-35.55, type="solid",
                    detection_score=0.93456, distance_to_pleura_mm=1.2345)
    write_nodules_csv([nodule], tmp_path / "nodules.csv")
    row = next(csv.DictReader((tmp_path / "nodules.csv").open(newline="")))
    assert [row[k] for k in ("centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_ras_x_mm", "centroid_lps_z_mm")] == \
        ["7.1", "-16.0", "-7.1", "-90.0"]
    assert [row[k] for k in ("long_axis_mm", "volume_mm3", "mean_hu", "distance_to_pleura_mm")] == \
        ["8.2", "212.3", "-35.5", "1.2"]
    assert row["detection_score"] == "0.93456"


@pytest.mark.slow
def test_nodule_runs_record_their_operating_point(phantom: sitk.Image, tmp_path: Path, capsys) -> None:
    scan = tmp_path / "chest.nrrd"
    sitk.WriteImage(phantom, str(scan))
    code, _, stderr = run_cli(["run", str(scan), "-o", str(tmp_path / "o"), "--tasks", "nodules", "--device", "cpu",
                               "--sensitivity", "high", "--max-nodules", "5", "--progress", "none"], capsys)
    assert code == 0, stderr
    findings = load_findings(tmp_path / "o" / "findings.json")
    record, point = findings["provenance"], operating_point("high")
    assert record["operating_point"] == "high" == findings["detection"]["operating_point"]
    assert record["threshold"] == point.threshold == findings["detection"]["threshold"]
    assert record["expected_false_positives_per_scan"] == point.expected_fp_per_scan
    assert record["max_nodules"] == 5 and record["tasks"] == ["nodules"]
