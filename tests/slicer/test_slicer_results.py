"""Output files, the nodule and emphysema rows, the summary, and the review's state (no MRML)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lungai.io.findings import (
    Centroid,
    Characteristics,
    Densitometry,
    Emphysema,
    Findings,
    InputInfo,
    LungRads,
    LungVolume,
    Malignancy,
    Nodule,
    RunInfo,
)
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.slicer.results import (
    EmphysemaRow,
    NoduleRow,
    OutputFiles,
    emphysema_rows,
    find_output_files,
    nodule_row,
    summary_text,
)
from lungai.slicer.review import Review, operating_point_name

NODULE = Nodule(id=1, centroid=Centroid((7.0, -15.0, -90.0), (-7.0, 15.0, -90.0), (6, 10, 5)), long_axis_mm=8.24,
                short_axis_mm=6.1, volume_mm3=212.0, mean_hu=-35.5, type="solid", detection_score=0.93,
                location="right lung", malignancy=Malignancy(probability=0.12, models=["nodule_cnn2d"]))
EMPHYSEMA = Emphysema(densitometry={"right": Densitometry(3.2, 21.6, 62.8, -920.0),
                                    "left": Densitometry(1.9, 17.0, 58.9, -914.0),
                                    "total": Densitometry(2.57, 19.4, 61.0, -917.0)})
FINDINGS = Findings(
    input=InputInfo(source="scan.nrrd", format="nrrd", modality=None, series_uid=None, size_xyz=(512, 512, 133),
                    spacing_xyz_mm=(0.7, 0.7, 2.5)),
    lungs={"right": LungVolume(2016.0), "left": LungVolume(1785.7), "total": LungVolume(3801.7)},
    emphysema=EMPHYSEMA,
    run=RunInfo(lungai_version="0.1.0", tasks=["lungs", "emphysema"], device="cpu", started_utc="2025-01-31T12:00:00Z"))


def findings_with(tasks: list[str] | None = None, **changes: Any) -> Findings:
    run = FINDINGS.run if tasks is None else dataclasses.replace(FINDINGS.run, tasks=tasks)
    return dataclasses.replace(FINDINGS, run=run, **changes)


def nodule(nodule_id: int, score: float | None, **changes: Any) -> Nodule:
    return dataclasses.replace(NODULE, id=nodule_id, detection_score=score, **changes)


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


def test_nodule_row() -> None:
    row = nodule_row(NODULE)
    assert row == NoduleRow(id=1, kind="nodule", type="solid", long_axis_mm=8.24, short_axis_mm=6.1, volume_mm3=212.0,
                            solid_component_mm=None, lung_rads=None, malignancy=0.12, characteristics="",
                            location="right lung", detection_score=0.93, operating_point=None,
                            position_ras_mm=(-7.0, 15.0, -90.0))
    assert row.description == "Nodule 1: 8.2 x 6.1 mm, solid"
    assert row.score_text == "0.930 (below high)"


def test_a_mass_row_and_its_category() -> None:
    row = nodule_row(nodule(2, None, kind="mass", type="part-solid", solid_component_mm=9.5,
                            lung_rads=LungRads("4B")), "accepted")
    assert (row.title, row.score_text, row.lung_rads, row.solid_component_mm, row.review) == (
        "Mass 2", "mass rule", "4B", 9.5, "accepted")


def test_characteristics_are_shown_as_the_report_shows_them() -> None:
    estimates = Characteristics(texture="part-solid", texture_probability=0.61, calcification_probability=0.02,
                                spiculation_probability=0.74, lobulation_probability=0.55,
                                ill_defined_margin_probability=0.1, present=["spiculation", "lobulation"])
    row = nodule_row(nodule(1, 0.9, characteristics=estimates))
    assert row.characteristics == "texture part-solid 0.61; spiculation 0.74, lobulation 0.55"
    assert nodule_row(nodule(1, 0.9)).characteristics == ""


def test_missing_nodule_measurements_stay_missing() -> None:  # non-finite numbers are written as null
    row = nodule_row(nodule(1, 0.8, long_axis_mm=None, location=None, malignancy=None))
    assert (row.long_axis_mm, row.location, row.malignancy) == (None, "", None)
    assert row.description == "Nodule 1: solid"


# The review's state ---------------------------------------------------------------------------

def review_of(*nodules: Nodule, min_detection_score: float = 0.5) -> Review:
    return Review.of(findings_with(nodules=list(nodules)), min_detection_score)


def test_the_operating_point_lists_by_score_and_always_lists_masses() -> None:
    review = review_of(nodule(3, 0.2), nodule(1, 0.9), nodule(2, 0.5), nodule(4, None))
    assert review.listed() == [1, 2, 4] and review.hidden() == [3]
    review.set_operating_point(0.95)
    assert review.listed() == [4] and review.hidden() == [1, 2, 3]
    review.set_operating_point(0.0)
    assert review.listed() == review.reported() == [1, 2, 3, 4]


def test_decisions_list_accepted_and_leave_out_rejected() -> None:
    review = review_of(nodule(1, 0.9), nodule(2, 0.3), nodule(3, 0.7))
    review.decide(2, "accepted")
    review.decide(3, "rejected")
    assert review.listed() == [1, 2, 3] and review.reported() == [1, 2]
    assert [review.status(i) for i in (1, 2, 3)] == ["unreviewed", "accepted", "rejected"]
    assert review.progress() == "1 accepted, 1 rejected, 1 to review"
    review.decide(2, None)
    assert review.listed() == [1, 3] and review.status(2) == "below operating point"
    with pytest.raises(KeyError):
        review.decide(9, "accepted")
    with pytest.raises(ValueError):
        review.decide(1, "maybe")


def test_an_edit_replaces_the_record_and_keeps_the_machine_one() -> None:
    review = review_of(nodule(1, 0.9))
    review.replace(nodule(1, 0.9, volume_mm3=100.0))
    assert review.nodules[1].volume_mm3 == 100.0 and review.verdict(1) == "edited"
    assert review.machine.nodules[0].volume_mm3 == 212.0
    review.decide(1, "accepted")
    assert review.verdict(1) == "accepted, edited" and review.progress() == "1 accepted, 1 edited"


def test_the_reviewed_findings_hold_what_is_reported_and_the_review_block() -> None:
    review = review_of(nodule(1, 0.9), nodule(2, 0.3), nodule(3, 0.7), min_detection_score=OPERATING_POINTS[
        "balanced"].threshold)
    review.decide(3, "rejected")
    reviewed = review.reviewed_findings("2025-02-01T09:30:00Z", "scan_findings_machine.json")
    assert [item.id for item in reviewed.nodules] == [1] and reviewed.review is not None
    assert reviewed.review["operating_point"] == {"name": "balanced",
                                                  "threshold": OPERATING_POINTS["balanced"].threshold}
    assert [(item["id"], item["status"]) for item in reviewed.review["nodules"]] == [
        (1, "unreviewed"), (2, "below operating point"), (3, "rejected")]
    assert [item.id for item in review.machine.nodules] == [1, 2, 3] and review.machine.review is None


@pytest.mark.parametrize(("score", "name"), [(OPERATING_POINTS["high"].threshold, "high"),
                                             (round(OPERATING_POINTS["specific"].threshold, 4), "specific"),
                                             (0.5, "custom")])
def test_operating_point_names(score: float, name: str) -> None:
    assert operating_point_name(score) == name


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
    emphysema = dataclasses.replace(EMPHYSEMA, model_probability=0.81)
    findings = findings_with(emphysema=emphysema, warnings=["slices are 5 mm thick"],
                             tasks=["lungs", "nodules", "malignancy", "emphysema"])
    lines = summary_text(findings, 2, 1, 0.5).splitlines()
    assert lines[2:] == ["Emphysema model: probability 0.81 (model estimate, not a diagnosis)",
                         "Nodules: 2 shown, 1 below the operating point 0.50 hidden",
                         "Warning: slices are 5 mm thick"]


def test_the_summary_shows_the_emphysema_model_caveat() -> None:
    assert "Emphysema model" not in summary_text(FINDINGS, 0, 0, 0.5)  # a default run has no probability
    emphysema = dataclasses.replace(EMPHYSEMA, model_probability=0.93, model_caveat="demonstration weights")
    lines = summary_text(findings_with(emphysema=emphysema), 0, 0, 0.5).splitlines()
    assert lines[2] == "Emphysema model: probability 0.93 (model estimate, not a diagnosis; demonstration weights)"


def test_summary_says_when_nothing_was_found() -> None:
    findings = findings_with(tasks=["lungs", "nodules"], emphysema=None)
    assert summary_text(findings, 0, 0, 0.5).splitlines()[1:] == ["Nodules: none found"]


def test_summary_shows_the_review_after_the_nodules() -> None:
    findings = findings_with(tasks=["lungs", "nodules"], emphysema=None, warnings=["thick slices"])
    assert summary_text(findings, 2, 0, 0.5, "1 accepted, 1 to review").splitlines()[1:] == [
        "Nodules: 2 shown", "Review: 1 accepted, 1 to review", "Warning: thick slices"]
