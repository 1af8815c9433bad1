"""The one-line impression, the Lung-RADS management table and the provenance rows."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from test_findings import make_findings, make_nodule

from lungai.io.findings import DetectionInfo, LungRads
from lungai.io.report_text import LUNG_RADS_MANAGEMENT, impression, management_rows, provenance_rows, summarize
from lungai.pipeline.lung_rads import CALCIFICATION_RULE, lung_rads_category

BALANCED = DetectionInfo("balanced", 0.8, expected_sensitivity=0.64, expected_fp_per_scan=0.67,
                         known_limitations=["ground-glass nodules"])


def two_nodules():
    small = make_nodule(1)
    large = dataclasses.replace(make_nodule(2), long_axis_mm=21.4, location="right lung, upper zone",
                                lung_rads=LungRads("4B"))
    return [small, large]


def test_impression_counts_nodules_names_the_largest_and_the_highest_category() -> None:
    findings = make_findings(two_nodules())
    assert impression(findings) == ("2 nodules, largest 21 mm (nodule 2, right lung, upper zone), "
                                    "Lung-RADS 4B (size rule); emphysema LAA-950 2.8 %")


def test_impression_names_the_rule_of_the_highest_category() -> None:
    calcified = dataclasses.replace(make_nodule(1), lung_rads=LungRads("1", CALCIFICATION_RULE))
    assert impression(make_findings([calcified])).endswith(f"Lung-RADS 1 ({CALCIFICATION_RULE}); "
                                                          "emphysema LAA-950 2.8 %")
    _, large = two_nodules()
    assert "Lung-RADS 4B (size rule)" in impression(make_findings([calcified, large]))
    assert [category for category, _ in management_rows(make_findings([calcified, large]))] == ["1", "4B"]


def test_impression_calls_masses_masses() -> None:
    nodule, _ = two_nodules()
    mass = dataclasses.replace(make_nodule(2), long_axis_mm=45.2, kind="mass", detected_by="mass",
                               detection_score=None, location="left lung, lower zone", lung_rads=LungRads("4B"))
    other_mass = dataclasses.replace(mass, id=3, long_axis_mm=33.0)
    assert impression(make_findings([nodule, mass, other_mass])).startswith(
        "2 masses and 1 nodule, largest 45 mm (mass 2, left lung, lower zone), Lung-RADS 4B (size rule);")


def test_impression_when_nothing_is_found_names_the_operating_point() -> None:
    findings = make_findings()
    findings.detection = BALANCED
    assert impression(findings) == ("no nodules or masses found at operating point balanced (score >= 0.80; "
                                    "finds 64% of validation nodules with 0.7 false positives per scan); "
                                    "emphysema LAA-950 2.8 %")


def test_impression_of_tasks_that_did_not_run() -> None:
    findings = make_findings()
    findings.run.tasks = ["lungs"]
    findings.emphysema = None
    assert impression(findings) == "nodules and masses not assessed (detection did not run); emphysema not assessed"


def test_impression_of_review_candidates_and_qualified_emphysema() -> None:
    candidate = dataclasses.replace(make_nodule(), lung_rads=None, malignancy=None, operating_point="high")
    findings = make_findings([candidate])
    findings.emphysema.warnings = ["slices are 5.0 mm thick"]
    assert impression(findings) == ("1 nodule, largest 8 mm (nodule 1, right lung), no Lung-RADS category "
                                    "(candidates for review only); emphysema LAA-950 2.8 % "
                                    "(see the emphysema warnings)")


def test_summary_starts_with_the_impression() -> None:
    findings = make_findings(two_nodules())
    assert summarize(findings).splitlines()[0] == f"Impression: {impression(findings)}"


@pytest.mark.parametrize("nodule_type", ["solid", "part-solid", "ground-glass"])
def test_every_category_the_size_rule_gives_has_management_text(nodule_type: str) -> None:
    categories = {lung_rads_category(nodule_type, size / 2, solid / 2).category
                  for size in range(0, 80) for solid in range(0, size + 1)}
    assert categories <= set(LUNG_RADS_MANAGEMENT)


def test_management_rows_follow_the_categories_found() -> None:
    rows = management_rows(make_findings(two_nodules()))
    assert [category for category, _ in rows] == ["3", "4B"]
    assert rows[0][1] == "Probably benign: 6-month LDCT."
    assert management_rows(make_findings()) == []


def test_provenance_rows_before_provenance_was_recorded() -> None:
    findings = make_findings()
    findings.detection = BALANCED
    rows = dict(provenance_rows(findings))
    assert rows["LungAI"] == "version 0.1.0, device cpu"
    assert rows["Weights"] == "resunet3d v1 (sha256 abababababab)"
    assert rows["Operating point"] == "balanced (score >= 0.80; 0.7 expected false positives per scan)"
    assert rows["Tasks"] == "lungs, nodules, emphysema"
    assert rows["Command"] == "not recorded in these findings"


@pytest.mark.parametrize("record", [dict, SimpleNamespace], ids=["json-mapping", "object"])
def test_provenance_rows_read_the_provenance_block(record) -> None:
    findings = make_findings()
    findings.provenance = record(command=["lungai", "run", "my scan.zip", "--sensitivity", "high"],
                                 operating_point="high", threshold=0.42, expected_false_positives_per_scan=4.1,
                                 max_nodules=30, tasks=["lungs", "nodules"],
                                 inputs=[{"series_uid": "1.2.3", "sha256": "cd" * 8}])
    rows = dict(provenance_rows(findings))
    assert rows["Command"] == "lungai run 'my scan.zip' --sensitivity high"
    assert rows["Operating point"] == "high (score >= 0.42; 4.1 expected false positives per scan)"
    assert rows["Tasks"] == "lungs, nodules"
    assert rows["Most lesions reported"] == "30"
    assert rows["Inputs"] == f"series_uid: 1.2.3, sha256: {'cd' * 8}"


def test_provenance_rows_of_a_custom_threshold_say_the_false_positives_are_unknown() -> None:
    findings = make_findings()
    findings.detection = DetectionInfo("custom", 0.5)
    assert dict(provenance_rows(findings))["Operating point"] == (
        "custom (score >= 0.50; expected false positives per scan not measured (custom threshold))")
