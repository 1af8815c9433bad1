"""findings.json schema, nodules.csv, coordinate frames and the text summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.errors import UnreadableInputError
from lungai.io.findings import (
    NODULE_CSV_COLUMNS,
    SCHEMA_VERSION,
    Centroid,
    Characteristics,
    Densitometry,
    DetectionInfo,
    Emphysema,
    Findings,
    InputInfo,
    LungRads,
    LungVolume,
    Malignancy,
    Nodule,
    RunInfo,
    WeightsInfo,
    load_findings,
    lps_to_ras,
    write_findings_json,
    write_nodules_csv,
)
from lungai.io.report_text import summarize
from lungai.io.volume import CTVolume


def make_image() -> sitk.Image:
    image = sitk.Image([20, 20, 10], sitk.sitkInt16)
    image.SetSpacing((0.5, 0.5, 2.0))
    image.SetOrigin((10.0, -20.0, -100.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def make_nodule(nodule_id: int = 1) -> Nodule:
    return Nodule(id=nodule_id, centroid=Centroid.from_lps((7.0, -15.0, -90.0), make_image()),
                  long_axis_mm=8.24, short_axis_mm=6.1, volume_mm3=212.0, mean_hu=-35.5,
                  type="solid", detection_score=0.93, location="right lung",
                  malignancy=Malignancy(0.12, ["measured_nodule"]),
                  lung_rads=LungRads("3"),
                  characteristics=Characteristics(texture="solid", texture_probability=0.9,
                                                  calcification_probability=0.7, spiculation_probability=0.1,
                                                  lobulation_probability=0.2, ill_defined_margin_probability=0.05,
                                                  present=["calcification"]))


def make_findings(nodules: list[Nodule] | None = None, patient_id: str | None = None) -> Findings:
    volume = CTVolume(image=make_image(), source="/data/scan.nrrd", format="nrrd", modality="CT",
                      patient_id=patient_id)
    densitometry = {region: Densitometry(laa_950_percent=laa, laa_910_percent=2 * laa,
                                         laa_856_percent=4 * laa, perc15_hu=-912.4)
                    for region, laa in [("right", 3.14), ("left", 2.5), ("total", 2.83)]}
    return Findings(
        input=InputInfo.from_volume(volume),
        lungs={"right": LungVolume(2410.0), "left": LungVolume(2210.0),
               "total": LungVolume(4620.0)},
        emphysema=Emphysema(densitometry),
        nodules=nodules or [],
        warnings=["slice thickness 5 mm is above 2.5 mm"],
        run=RunInfo(lungai_version="0.1.0", tasks=["lungs", "nodules", "emphysema"],
                    device="cpu", started_utc="2025-01-31T12:00:00Z",
                    finished_utc="2025-01-31T12:01:30Z",
                    weights=[WeightsInfo("resunet3d", "v1", "ab" * 32)],
                    timings_s={"lungs": 12.5, "nodules": 60.0}),
    )


def test_lps_to_ras_negates_x_and_y() -> None:
    assert lps_to_ras((1.5, -2.0, 3.0)) == (-1.5, 2.0, 3.0)
    assert lps_to_ras(lps_to_ras((1.5, -2.0, 3.0))) == (1.5, -2.0, 3.0)


def test_centroid_in_all_frames() -> None:
    centroid = Centroid.from_lps((7.0, -15.0, -90.0), make_image())
    assert centroid.ras_mm == (-7.0, 15.0, -90.0)
    # x axis flipped: (10 - 7) / 0.5 = 6; y: (-15 + 20) / 0.5 = 10; z: (-90 + 100) / 2 = 5.
    assert centroid.voxel_index == (6, 10, 5)


def test_json_round_trip(tmp_path: Path) -> None:
    findings = make_findings([make_nodule()])
    write_findings_json(findings, tmp_path / "findings.json")
    loaded = load_findings(tmp_path / "findings.json")
    assert loaded == findings.to_dict()
    assert loaded["schema_version"] == SCHEMA_VERSION == "2.2"
    assert list(loaded) == ["schema_version", "input", "lungs", "emphysema", "nodules", "detection",
                            "warnings", "run", "provenance"]
    assert loaded["input"] == {"source": "/data/scan.nrrd", "format": "nrrd", "modality": "CT",
                               "series_uid": None, "size_xyz": [20, 20, 10],
                               "spacing_xyz_mm": [0.5, 0.5, 2.0]}
    assert loaded["lungs"]["right"] == {"volume_ml": 2410.0}
    assert loaded["emphysema"]["densitometry"]["total"]["laa_950_percent"] == 2.83
    assert loaded["emphysema"]["model_probability"] is None
    assert list(loaded["emphysema"]) == ["densitometry", "model_probability", "model", "model_caveat", "warnings",
                                         "notes"]
    assert (loaded["emphysema"]["model_caveat"], loaded["emphysema"]["warnings"], loaded["emphysema"]["notes"]) == (
        None, [], [])
    nodule = loaded["nodules"][0]
    assert nodule["centroid"] == {"lps_mm": [7.0, -15.0, -90.0], "ras_mm": [-7.0, 15.0, -90.0],
                                  "voxel_index": [6, 10, 5]}
    assert nodule["malignancy"] == {"probability": 0.12, "models": ["measured_nodule"],
                                    "label": "model estimate, not a diagnosis",
                                    "estimates": "radiologists' suspicion on LIDC", "calibration": None}
    assert nodule["lung_rads"] == {"category": "3", "rule": "size rule"}
    assert loaded["run"]["weights"] == [{"name": "resunet3d", "revision": "v1",
                                         "sha256": "ab" * 32}]


def test_patient_id_written_only_when_present() -> None:
    assert "patient_id" not in make_findings().to_dict()["input"]
    assert make_findings(patient_id="P01").to_dict()["input"]["patient_id"] == "P01"


def test_numpy_values_and_non_finite_numbers_make_valid_json(tmp_path: Path) -> None:
    findings = make_findings()
    findings.lungs["right"] = LungVolume(np.float32(2410.5))
    findings.nodules = [make_nodule()]
    findings.nodules[0].volume_mm3 = np.float64("nan")
    findings.nodules[0].long_axis_mm = np.int64(31)
    write_findings_json(findings, tmp_path / "findings.json")
    data = json.loads((tmp_path / "findings.json").read_text())  # strict: no NaN tokens
    assert data["lungs"]["right"]["volume_ml"] == 2410.5
    assert (data["nodules"][0]["volume_mm3"], data["nodules"][0]["long_axis_mm"]) == (None, 31)


@pytest.mark.parametrize("content", [
    '{"schema_version": "3.0", "nodules": []}',
    '{"schema_version": "1.1", "nodules": []}',
    '{"nodules": []}',
    '["schema_version"]',
    "not json",
], ids=["newer-major", "older-major", "missing", "not-an-object", "not-json"])
def test_load_refuses_incompatible_files(content: str, tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    path.write_text(content)
    with pytest.raises(UnreadableInputError) as error:
        load_findings(path)
    assert "findings.json" in error.value.message


def test_load_accepts_newer_minor_version(tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    path.write_text('{"schema_version": "2.7", "extra": 1}')
    assert load_findings(path)["extra"] == 1


def test_nodules_csv_header_without_nodules(tmp_path: Path) -> None:
    write_nodules_csv([], tmp_path / "nodules.csv")
    rows = list(csv.reader((tmp_path / "nodules.csv").open(newline="")))
    assert rows == [list(NODULE_CSV_COLUMNS)]
    assert {"centroid_lps_x_mm", "centroid_ras_x_mm", "centroid_voxel_i"} <= set(rows[0])


def test_nodules_csv_rows(tmp_path: Path) -> None:
    bare = Nodule(id=2, centroid=Centroid((1.0, 2.0, 3.0), (-1.0, -2.0, 3.0), (0, 0, 0)),
                  long_axis_mm=4.0, short_axis_mm=3.0, volume_mm3=30.0, mean_hu=-600.0,
                  type="ground-glass", detection_score=0.5)
    write_nodules_csv([make_nodule(), bare], tmp_path / "nodules.csv")
    rows = list(csv.DictReader((tmp_path / "nodules.csv").open(newline="")))
    assert len(rows) == 2
    first = rows[0]
    assert (first["centroid_lps_x_mm"], first["centroid_ras_x_mm"]) == ("7.0", "-7.0")
    assert (first["centroid_voxel_i"], first["centroid_voxel_j"], first["centroid_voxel_k"]) == \
        ("6", "10", "5")
    assert first["malignancy_models"] == "measured_nodule"
    assert first["malignancy_estimates"] == "radiologists' suspicion on LIDC"
    assert (first["texture"], first["calcification_probability"], first["lung_rads_rule"]) == \
        ("solid", "0.7", "size rule")
    assert (rows[1]["texture"], rows[1]["spiculation_probability"], rows[1]["malignancy_estimates"]) == ("", "", "")
    assert first["lung_rads_category"] == "3"
    assert first["type"] == "solid"
    assert (rows[1]["malignancy_probability"], rows[1]["location"]) == ("", "")


def test_nodule_validation() -> None:
    centroid = Centroid((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0, 0, 0))
    with pytest.raises(ValueError, match="type"):
        Nodule(1, centroid, 5.0, 4.0, 50.0, 0.0, "calcified", 0.9)
    with pytest.raises(ValueError, match="id"):
        Nodule(0, centroid, 5.0, 4.0, 50.0, 0.0, "solid", 0.9)


def test_summary_lines() -> None:
    text = summarize(make_findings([make_nodule()]))
    lines = text.splitlines()
    assert lines[0].startswith("Impression: 1 nodule, largest 8 mm")  # the impression: tests/io/test_report_text.py
    assert lines[1] == "Right lung: 2.41 L, LAA-950 3.1 %"
    assert lines[2] == "Left lung: 2.21 L, LAA-950 2.5 %"
    assert lines[3] == "Both lungs: 4.62 L, LAA-950 2.8 %, Perc15 -912 HU"
    assert lines[4] == "Nodules and masses: 1 found"
    assert lines[5].startswith("  Nodule 1: 8.2 x 6.1 mm, 212 mm3, solid, detection score 0.93 (custom), "
                               "right lung, malignancy 0.12 (radiologists' suspicion on LIDC; model estimate, "
                               "not a diagnosis), characteristics: texture solid 0.90; calcification 0.70")
    assert lines[-1] == "Warning: slice thickness 5 mm is above 2.5 mm"


def test_summary_says_when_a_stage_found_nothing_and_what_it_may_miss() -> None:
    findings = make_findings()
    findings.detection = DetectionInfo("balanced", 0.8, expected_sensitivity=0.64, expected_fp_per_scan=0.67,
                                       known_limitations=["ground-glass nodules"])
    lines = summarize(findings).splitlines()
    assert "Nodules and masses: none found" in lines
    assert "  at operating point balanced (score >= 0.80; finds 64% of validation nodules with 0.7 false " \
           "positives per scan)" in lines
    assert "  may miss ground-glass nodules" in lines


def test_summary_names_masses_and_how_each_lesion_was_found() -> None:
    nodule = make_nodule()
    nodule.operating_point = "balanced"
    mass = make_nodule()
    mass.id, mass.kind, mass.detected_by, mass.detection_score, mass.long_axis_mm = 2, "mass", "mass", None, 45.0
    lines = summarize(make_findings([nodule, mass])).splitlines()
    assert "Nodules and masses: 2 found (1 over 30 mm: mass)" in lines
    assert any(line.startswith("  Nodule 1:") and "(balanced)" in line for line in lines)
    assert any(line.startswith("  Mass 2: 45.0 x") and "found by the mass rule" in line for line in lines)


def test_characteristics_survive_the_json_round_trip(tmp_path: Path) -> None:
    from lungai.io.findings import findings_from_dict

    write_findings_json(make_findings([make_nodule()]), tmp_path / "findings.json")
    loaded = load_findings(tmp_path / "findings.json")
    nodule = loaded["nodules"][0]
    assert nodule["characteristics"]["present"] == ["calcification"]
    assert nodule["characteristics"]["label"] == "model estimates of LIDC readers' ratings, not a diagnosis"
    assert nodule["malignancy"]["estimates"] == "radiologists' suspicion on LIDC"
    assert findings_from_dict(loaded).nodules[0].characteristics == make_nodule().characteristics


def test_read_findings_gives_the_typed_findings_of_a_file_or_its_folder(tmp_path: Path) -> None:
    from lungai.io.findings import read_findings

    findings = make_findings([make_nodule(), make_nodule(2)])
    write_findings_json(findings, tmp_path / "findings.json")
    for path in (tmp_path / "findings.json", tmp_path, str(tmp_path)):
        typed = read_findings(path)
        assert typed.to_dict() == findings.to_dict()
        assert typed.nodules[1].lung_rads == LungRads("3") and typed.emphysema is not None
        assert typed.emphysema.densitometry["total"] == findings.emphysema.densitometry["total"]


def test_read_findings_refuses_content_off_the_schema(tmp_path: Path) -> None:
    from lungai.io.findings import read_findings

    data = make_findings([make_nodule()]).to_dict()
    data["nodules"][0]["type"] = "cavitary"
    (tmp_path / "findings.json").write_text(json.dumps(data))
    with pytest.raises(UnreadableInputError, match="does not follow the findings schema"):
        read_findings(tmp_path)
    data["nodules"][0]["type"] = "solid"
    del data["nodules"][0]["centroid"]
    (tmp_path / "findings.json").write_text(json.dumps(data))
    with pytest.raises(UnreadableInputError, match="does not follow the findings schema"):
        read_findings(tmp_path / "findings.json")
