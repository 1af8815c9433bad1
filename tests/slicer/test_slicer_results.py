"""Output files, the nodule and emphysema rows, the summary, and saving the report (no MRML)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from lungai.slicer.report import save_report
from lungai.slicer.results import (EmphysemaRow, NoduleRow, OutputFiles, emphysema_rows, find_output_files,
                                   nodule_rows, summary_text)

NODULE = {
    "id": 1, "centroid": {"lps_mm": [7.0, -15.0, -90.0], "ras_mm": [-7.0, 15.0, -90.0], "voxel_index": [6, 10, 5]},
    "long_axis_mm": 8.24, "short_axis_mm": 6.1, "volume_mm3": 212.0, "mean_hu": -35.5, "type": "solid",
    "detection_score": 0.93, "location": "right lung",
    "malignancy": {"probability": 0.12, "models": ["nodule_cnn2d"], "label": "model estimate, not a diagnosis"},
    "lung_rads": None,
}
FINDINGS: dict[str, Any] = {
    "schema_version": "1.0",
    "lungs": {"right": {"volume_ml": 2016.0}, "left": {"volume_ml": 1785.7}, "total": {"volume_ml": 3801.7}},
    "emphysema": {"densitometry": {
        "right": {"laa_950_percent": 3.2, "laa_910_percent": 21.6, "laa_856_percent": 62.8, "perc15_hu": -920.0},
        "left": {"laa_950_percent": 1.9, "laa_910_percent": 17.0, "laa_856_percent": 58.9, "perc15_hu": -914.0},
        "total": {"laa_950_percent": 2.57, "laa_910_percent": 19.4, "laa_856_percent": 61.0, "perc15_hu": -917.0}},
        "model_probability": None},
    "nodules": [],
    "warnings": [],
    "run": {"tasks": ["lungs", "emphysema"]},
}


def findings_with(**changes: Any) -> dict[str, Any]:
    findings = copy.deepcopy(FINDINGS)
    findings.update(changes)
    return findings


def nodule(nodule_id: int, score: float | None, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(NODULE), "id": nodule_id, "detection_score": score, **changes}


def test_find_output_files(tmp_path: Path) -> None:
    for name in ("scan.seg.nrrd", "findings.json", "nodules.csv", "scan_labels.nii.gz", "run.log"):
        (tmp_path / name).write_text("x")
    files = find_output_files(tmp_path)
    assert files == OutputFiles(folder=tmp_path, segmentation=tmp_path / "scan.seg.nrrd",
                                findings=tmp_path / "findings.json", nodules=tmp_path / "nodules.csv")
    assert files.stem == "scan"
    (tmp_path / "report.html").write_text("<html/>")
    assert find_output_files(tmp_path).report == tmp_path / "report.html"


@pytest.mark.parametrize(("names", "problem"), [
    (["findings.json"], "should hold one .seg.nrrd file, found 0"),
    (["a.seg.nrrd", "b.seg.nrrd", "findings.json"], "found 2"),
    (["a.seg.nrrd"], "holds no findings.json"),
])
def test_an_incomplete_output_folder_is_refused(tmp_path: Path, names: list[str], problem: str) -> None:
    for name in names:
        (tmp_path / name).write_text("x")
    with pytest.raises(FileNotFoundError, match=problem):
        find_output_files(tmp_path)


def test_nodule_rows() -> None:
    shown, hidden = nodule_rows(findings_with(nodules=[NODULE]))
    assert hidden == []
    assert shown == [NoduleRow(id=1, location="right lung", position_ras_mm=(-7.0, 15.0, -90.0), long_axis_mm=8.24,
                               short_axis_mm=6.1, volume_mm3=212.0, mean_hu=-35.5, type="solid", malignancy=0.12,
                               detection_score=0.93)]
    assert shown[0].description == "Nodule 1: 8.2 x 6.1 mm, solid"


def test_the_operating_point_splits_the_nodules_by_detection_score() -> None:
    findings = findings_with(nodules=[nodule(3, 0.2), nodule(1, 0.9), nodule(2, 0.5), nodule(4, None)])
    shown, hidden = nodule_rows(findings, min_detection_score=0.5)
    assert [row.id for row in shown] == [1, 2, 4]
    assert hidden == [3]
    assert [row.id for row in nodule_rows(findings)[0]] == [1, 2, 3, 4]


def test_missing_nodule_measurements_stay_missing() -> None:
    shown, _ = nodule_rows(findings_with(nodules=[nodule(1, 0.8, long_axis_mm=None, location=None,
                                                         malignancy=None)]))
    assert (shown[0].long_axis_mm, shown[0].location, shown[0].malignancy) == (None, "", None)
    assert shown[0].description == "Nodule 1: solid"


def test_emphysema_rows() -> None:
    rows = emphysema_rows(FINDINGS)
    assert [row.title for row in rows] == ["Right lung", "Left lung", "Both lungs"]
    assert rows[2] == EmphysemaRow(region="total", title="Both lungs", volume_ml=3801.7, laa_950_percent=2.57,
                                   laa_910_percent=19.4, laa_856_percent=61.0, perc15_hu=-917.0)
    assert emphysema_rows(findings_with(emphysema=None)) == []


def test_summary_of_a_lungs_and_emphysema_run() -> None:
    assert summary_text(FINDINGS, 0, 0, 0.5) == (
        "Lungs: right 2.02 L, left 1.79 L\nEmphysema: LAA-950 2.6 % of both lungs, Perc15 -917 HU")


def test_summary_of_a_run_with_every_task() -> None:
    emphysema = {**FINDINGS["emphysema"], "model_probability": 0.81}
    findings = findings_with(emphysema=emphysema, warnings=["slices are 5 mm thick"],
                             run={"tasks": ["lungs", "nodules", "malignancy", "emphysema"]})
    lines = summary_text(findings, 2, 1, 0.5).splitlines()
    assert lines[2:] == ["Emphysema model: probability 0.81 (model estimate, not a diagnosis)",
                         "Nodules: 2 shown, 1 below the operating point 0.50 hidden",
                         "Warning: slices are 5 mm thick"]


def test_the_summary_shows_the_emphysema_model_caveat() -> None:
    assert "Emphysema model" not in summary_text(FINDINGS, 0, 0, 0.5)  # a default run has no probability
    emphysema = {**FINDINGS["emphysema"], "model_probability": 0.93, "model_caveat": "demonstration weights"}
    lines = summary_text(findings_with(emphysema=emphysema), 0, 0, 0.5).splitlines()
    assert lines[2] == "Emphysema model: probability 0.93 (model estimate, not a diagnosis; demonstration weights)"


def test_summary_says_when_nothing_was_found() -> None:
    findings = findings_with(run={"tasks": ["lungs", "nodules"]}, emphysema=None)
    assert summary_text(findings, 0, 0, 0.5).splitlines()[1:] == ["Nodules: none found"]


def test_save_report_copies_the_files_named_after_the_scan(tmp_path: Path) -> None:
    output = tmp_path / "results"
    output.mkdir()
    for name, text in [("scan.seg.nrrd", "seg"), ("findings.json", "{}"), ("nodules.csv", "id\n"),
                       ("report.html", "<html/>")]:
        (output / name).write_text(text)
    destination = tmp_path / "reports"
    destination.mkdir()
    copies = save_report(find_output_files(output), destination)
    assert copies == [destination / "scan_report.html", destination / "scan_findings.json",
                      destination / "scan_nodules.csv"]
    assert (destination / "scan_findings.json").read_text() == "{}"
    assert sorted(path.name for path in destination.iterdir()) == sorted(path.name for path in copies)


def test_save_report_without_a_report_html(tmp_path: Path) -> None:
    (tmp_path / "scan.seg.nrrd").write_text("seg")
    (tmp_path / "findings.json").write_text("{}")
    destination = tmp_path / "out"
    destination.mkdir()
    assert save_report(find_output_files(tmp_path), destination) == [destination / "scan_findings.json"]


def test_save_report_needs_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "scan.seg.nrrd").write_text("seg")
    (tmp_path / "findings.json").write_text("{}")
    with pytest.raises(NotADirectoryError):
        save_report(find_output_files(tmp_path), tmp_path / "missing")
