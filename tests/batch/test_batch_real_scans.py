"""``lungai batch`` on the shared real whole scans (a DICOM zip and an NRRD) and a bad file."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from batch_scans import write_garbage

from lungai.errors import CasesFailedError

pytestmark = pytest.mark.slow


def test_real_scans_are_done_and_a_bad_file_fails(data_root: Path, tmp_path: Path) -> None:
    scans = data_root / "lidc_scans"
    bad = write_garbage(tmp_path / "broken.nrrd")
    (tmp_path / "cases.csv").write_text(f"case_id,path\nlidc1,{scans / 'LIDC-IDRI-0001' / 'dicom.zip'}\n"
                                        f"lidc2,{scans / 'LIDC-IDRI-0002' / 'LIDC-IDRI-0002.nrrd'}\nbroken,{bad}\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "batch", str(tmp_path / "cases.csv"), "-o", str(out),
                             "--tasks", "lungs,emphysema", "--device", "cpu", "--workers", "2", "--progress", "none"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == CasesFailedError.exit_code, result.stderr
    with (out / "cohort.csv").open(newline="") as stream:
        rows = {row["case_id"]: row for row in csv.DictReader(stream)}
    assert {case: row["status"] for case, row in rows.items()} == {"lidc1": "done", "lidc2": "done", "broken": "failed"}
    assert all(3000 < float(rows[case]["lung_volume_total_ml"]) < 9000 for case in ("lidc1", "lidc2"))
    assert (out / "lidc1" / "findings.json").exists() and any((out / "lidc1").glob("*.seg.dcm"))
