"""``lungai follow-up`` end to end on a real scan pair with a known transform, and its bad inputs.

The pair: LIDC-IDRI-0001 (a test patient) on a 1 mm grid as the prior, and the same chest moved
through a known affine transform onto a 1.1 x 1.1 x 2 mm grid as the current scan, 180 days later.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from cli_runner import run_cli
from shared_data import require
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai.errors import (
    DifferentPatientError,
    NoLungsFoundError,
    OutputExistsError,
    PriorOutputMismatchError,
    ScanOrderError,
)
from lungai.io.reader import read_scan

OUTPUT_FILES = ("follow_up.json", "follow_up.csv", "report.html", "prior_registered.nrrd", "registration.tfm",
                "current.seg.nrrd", "prior/findings.json", "current/findings.json")


def _truth() -> sitk.AffineTransform:
    """Current -> prior: 3 degrees about z, 2 % scale in x, 6 mm shift."""
    angle = np.deg2rad(3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((rotation @ np.diag([1.02, 1.0, 1.0])).ravel().tolist())
    transform.SetTranslation((4.0, -6.0, 3.0))
    return transform


def _resampled(image: sitk.Image, spacing: tuple[float, float, float], transform: sitk.Transform) -> sitk.Image:
    size = [int(n * s / t) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    grid = sitk.Image(size, sitk.sitkInt16)
    grid.SetSpacing(spacing)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    return sitk.Resample(image, grid, transform, sitk.sitkLinear, -1024, sitk.sitkInt16)


@pytest.fixture(scope="module")
def pair(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, sitk.AffineTransform]:
    folder = tmp_path_factory.mktemp("pair")
    scan = read_scan(require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")).image
    prior = _resampled(scan, (1.0, 1.0, 2.5), sitk.Transform())
    truth = _truth()
    size = np.array(prior.GetSize())
    truth.SetCenter(prior.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    sitk.WriteImage(prior, str(folder / "prior.nrrd"), True)
    sitk.WriteImage(_resampled(prior, (1.1, 1.1, 2.0), truth), str(folder / "current.nrrd"), True)
    return folder / "prior.nrrd", folder / "current.nrrd", truth


@pytest.fixture(scope="module")
def follow_up_run(pair, tmp_path_factory: pytest.TempPathFactory):
    prior, current, truth = pair
    out = tmp_path_factory.mktemp("run") / "out"
    from lungai.cli.main import main

    try:
        main(["follow-up", str(prior), str(current), "-o", str(out), "--interval-days", "180", "--device", "cpu"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out, truth


@pytest.mark.slow
def test_outputs_and_the_matched_nodule(follow_up_run) -> None:
    code, out, truth = follow_up_run
    assert code == 0
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    document = json.loads((out / "follow_up.json").read_text())
    assert document["schema"] == "lungai-follow-up" and document["schema_version"] == "1.1"
    assert document["interval_days"] == 180 and document["prior"]["date"] is None
    registration = document["registration"]
    assert registration["quality"] == "good" and registration["lung_dice"] > 0.9
    matched = [n for n in document["nodules"] if n["status"] == "matched"]
    assert matched, "the LIDC-IDRI-0001 nodule (about 25 mm) is found in both scans"
    big = max(matched, key=lambda n: n["prior"]["volume_mm3"])
    assert big["prior"]["long_axis_mm"] > 20 and big["prior"]["found_by"] == "detector"
    # The mapped prior centre lies where the known transform puts it, and near the current centroid.
    expected = np.asarray(truth.GetInverse().TransformPoint(big["prior"]["centre_lps_mm"]))
    assert np.linalg.norm(np.asarray(big["prior_centre_in_current_lps_mm"]) - expected) < 2.0
    assert np.linalg.norm(np.asarray(big["current"]["centre_lps_mm"]) - expected) < 5.0
    assert abs(big["growth"]["volume_change_pct"]) < 25 and big["growth"]["interval_days"] == 180
    assert big["growth"]["volume_method"] == "paired partial-volume volumetry"
    assert big["lung_rads"]["label"] == "rule applied to measurements, not a diagnosis"
    # registration.tfm maps current points to prior points (fixed = current).
    written = sitk.ReadTransform(str(out / "registration.tfm"))
    point = big["current"]["centre_lps_mm"]
    assert np.linalg.norm(np.asarray(written.TransformPoint(point)) - np.asarray(truth.TransformPoint(point))) < 2.0
    rows = list(csv.DictReader((out / "follow_up.csv").open()))
    assert len(rows) == len(document["nodules"])
    assert {row["status"] for row in rows} <= {"matched", "new", "resolved"}
    segments = {s["name"] for s in slicerio.read_segmentation(str(out / "current.seg.nrrd"),
                                                              skip_voxels=True)["segments"]}
    assert f"{big['segment']}" in segments and "(prior " in big["segment"]
    registered = sitk.ReadImage(str(out / "prior_registered.nrrd"))
    assert registered.GetSize() == sitk.ReadImage(str(out / "current" / "current_labels.nii.gz")).GetSize()
    html = (out / "report.html").read_text()
    assert html.count('data-view="axial"') >= 2 * len(matched) and "not a diagnosis" in html
    assert not list(out.parent.glob(".lungai-tmp-*"))


@pytest.mark.slow
def test_output_folders_are_reused(follow_up_run, tmp_path, capsys) -> None:
    _code, out, _truth = follow_up_run
    again = tmp_path / "again"
    code, stdout, stderr = run_cli(["follow-up", str(out / "prior"), str(out / "current"), "-o", str(again),
                                    "--interval-days", "180"], capsys)
    assert code == 0, stderr
    first, second = (json.loads((folder / "follow_up.json").read_text()) for folder in (out, again))
    assert second["prior"]["reused_output"] and second["current"]["reused_output"]
    assert [n["status"] for n in second["nodules"]] == [n["status"] for n in first["nodules"]]
    assert "analyse" in second["timings_s"] and second["timings_s"]["analyse"] < first["timings_s"]["analyse"]
    assert "matched" in stdout


@pytest.mark.slow
@pytest.mark.parametrize(("change", "problem"), [
    (lambda data: data["run"].update(lungai_version="0.0.1"), "made by LungAI 0.0.1"),
    (lambda data: data["provenance"]["inputs"][0].update(sha256="0" * 64), "does not match"),
])
def test_reused_folder_must_match(follow_up_run, tmp_path, capsys, change, problem) -> None:
    _code, out, _truth = follow_up_run
    prior = shutil.copytree(out / "prior", tmp_path / "prior")
    data = json.loads((prior / "findings.json").read_text())
    change(data)
    (prior / "findings.json").write_text(json.dumps(data))
    code, _stdout, stderr = run_cli(["follow-up", str(prior), str(out / "current"), "-o", str(tmp_path / "o")], capsys)
    assert code == PriorOutputMismatchError.exit_code and problem in stderr
    assert not (tmp_path / "o").exists()


def _dicom_pair(tmp_path: Path, prior_header: dict, current_header: dict) -> tuple[Path, Path]:
    array = box_phantom(shape=(24, 48, 48))
    write_dicom_series(tmp_path / "prior", array, **prior_header)
    write_dicom_series(tmp_path / "current", array, **current_header)
    return tmp_path / "prior", tmp_path / "current"


def test_different_patients_are_refused(tmp_path, capsys):
    prior, current = _dicom_pair(tmp_path, {"PatientID": "A"}, {"PatientID": "B"})
    code, _stdout, stderr = run_cli(["follow-up", str(prior), str(current), "-o", str(tmp_path / "o")], capsys)
    assert code == DifferentPatientError.exit_code and "different DICOM PatientIDs" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()


def test_prior_dated_after_current_is_refused(tmp_path, capsys):
    prior, current = _dicom_pair(tmp_path, {"StudyDate": "20240601"}, {"StudyDate": "20240101"})
    code, _stdout, stderr = run_cli(["follow-up", str(prior), str(current), "-o", str(tmp_path / "o")], capsys)
    assert code == ScanOrderError.exit_code and "2024-06-01" in stderr and "2024-01-01" in stderr
    assert not (tmp_path / "o").exists()
    # The dates given on the command line override the headers.
    code, _stdout, stderr = run_cli(["follow-up", str(prior), str(current), "-o", str(tmp_path / "o"),
                                     "--prior-date", "2023-01-01", "--current-date", "2022-01-01"], capsys)
    assert code == ScanOrderError.exit_code and "2023-01-01" in stderr


def test_a_scan_without_lungs_leaves_nothing(tmp_path, capsys):
    water = write_image(box_phantom(shape=(40, 64, 64), inside=0), tmp_path / "water.nrrd", spacing=(5.0, 5.0, 5.0))
    code, _stdout, stderr = run_cli(["follow-up", str(water), str(water), "-o", str(tmp_path / "o"),
                                     "--device", "cpu"], capsys)
    assert code == NoLungsFoundError.exit_code and "no lungs" in stderr.lower()
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".lungai-tmp-*"))


def test_usage_errors(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    scan = write_image(box_phantom(), tmp_path / "box.nrrd")
    code, _stdout, stderr = run_cli(["follow-up", str(scan), str(scan), "-o", str(tmp_path / "o")], capsys)
    assert code == OutputExistsError.exit_code
    code, _stdout, stderr = run_cli(["follow-up", str(scan), str(scan), "--prior-date", "1 May"], capsys)
    assert code == 2 and "YYYY-MM-DD" in stderr
    code, _stdout, stderr = run_cli(["run", str(scan), "--interval-days", "5"], capsys)
    assert code == 2 and "--prior" in stderr


def test_run_with_prior_is_a_follow_up(tmp_path, capsys):
    prior, current = _dicom_pair(tmp_path, {"PatientID": "A"}, {"PatientID": "B"})
    code, _stdout, stderr = run_cli(["run", str(current), "--prior", str(prior), "-o", str(tmp_path / "o")], capsys)
    assert code == DifferentPatientError.exit_code and "different DICOM PatientIDs" in stderr
