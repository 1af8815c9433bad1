"""What `lungai run` writes besides the label files: report.html always, a DICOM SEG for DICOM input."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import pydicom
from shared_data import require

from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline

TASKS = ("lungs", "emphysema")


def run(scan: Path, output: Path) -> dict:
    run_pipeline(RunConfig(input=scan, output=output, tasks=TASKS))
    return json.loads((output / "findings.json").read_text(encoding="utf-8"))


def test_dicom_folder_gets_seg_and_report(lidc20_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    findings = run(lidc20_folder, output)
    seg = hd.seg.segread(output / "LIDC-IDRI-0001_20000101_3000566.seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == findings["input"]["series_uid"]
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == ["Right lung", "Left lung"]
    report = (output / "report.html").read_text(encoding="utf-8")
    assert "lungs-table" in report and "Research software, not a diagnosis" in report
    assert not any(warning.startswith("no DICOM SEG") for warning in findings["warnings"])


def test_series_that_cannot_be_referenced_gets_a_warning(lidc20_folder: Path, tmp_path: Path) -> None:
    """The same real slices with the SOP Instance UIDs blanked, as some de-identification does."""
    blanked = tmp_path / "blanked"
    blanked.mkdir()
    for path in sorted(lidc20_folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ""
        ds.save_as(blanked / path.name)
    output = tmp_path / "out"
    findings = run(blanked, output)
    assert not list(output.glob("*.seg.dcm"))
    warnings = [w for w in findings["warnings"] if w.startswith("no DICOM SEG written")]
    assert len(warnings) == 1 and "SOPInstanceUID" in warnings[0]
    assert warnings[0] in (output / "report.html").read_text(encoding="utf-8")


def test_non_dicom_input_gets_report_only(data_root: Path, tmp_path: Path) -> None:
    scan = require(data_root / "cip_small" / "ct-64.nrrd")
    output = tmp_path / "out"
    findings = run(scan, output)
    assert (output / "report.html").is_file() and not list(output.glob("*.seg.dcm"))
    assert not any(warning.startswith("no DICOM SEG") for warning in findings["warnings"])
