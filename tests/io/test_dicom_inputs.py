"""DICOM inputs as PACS and TCIA deliver them: a localizer inside the series, several patients in
one folder, every download named ``dicom.zip``."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from pydicom.uid import generate_uid
from synthetic_scans import box_phantom, write_dicom_series

from lungai.data.phantom import make_phantom
from lungai.errors import AmbiguousInputError
from lungai.io.reader import ReadOptions, read_scan, safe_name, scan_name


def add_localizer(series: Path, *, image_type: list[str], name: str = "localizer.dcm") -> Path:
    """Write a coronal scout image into a copy of a real series: same series, study and frame of
    reference, its own instance, ImageType and orientation, placed in the middle of the volume."""
    slices = sorted(series.glob("*.dcm"))
    ds = pydicom.dcmread(slices[len(slices) // 2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = image_type
    ds.InstanceNumber = 1
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    ds.SeriesDescription = "Scout"
    path = series / name
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def lidc_copy(lidc20_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(lidc20_folder, tmp_path / "series"))


@pytest.mark.parametrize("image_type", [["ORIGINAL", "PRIMARY", "LOCALIZER"], ["ORIGINAL", "PRIMARY", "AXIAL"]],
                         ids=["ImageType LOCALIZER", "orientation only"])
def test_a_localizer_in_the_series_is_left_out(lidc20_folder: Path, lidc_copy: Path, image_type: list[str]) -> None:
    localizer = add_localizer(lidc_copy, image_type=image_type)
    clean, with_scout = read_scan(lidc20_folder), read_scan(lidc_copy)
    for image in (clean.image, with_scout.image):
        assert image.GetSize() == (512, 512, 20)
    assert with_scout.image.GetSpacing() == clean.image.GetSpacing()
    assert with_scout.image.GetOrigin() == clean.image.GetOrigin()
    assert with_scout.image.GetDirection() == clean.image.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(with_scout.image), sitk.GetArrayViewFromImage(clean.image))
    assert with_scout.warnings == clean.warnings == []
    assert [h.SOPInstanceUID for h in with_scout.dicom_headers] == [h.SOPInstanceUID for h in clean.dicom_headers]
    assert str(localizer) not in with_scout.dicom_files


def test_a_run_with_a_localizer_in_the_series_finds_and_writes_the_same(lidc20_folder: Path, lidc_copy: Path,
                                                                          tmp_path: Path) -> None:
    from lungai.pipeline.config import RunConfig
    from lungai.pipeline.runner import run_pipeline

    add_localizer(lidc_copy, image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    results = {}
    for name, series in (("clean", lidc20_folder), ("scout", lidc_copy)):
        out = tmp_path / name
        run_pipeline(RunConfig(input=series, output=out, tasks=("lungs", "emphysema"), device="cpu"))
        findings = json.loads((out / "findings.json").read_text())
        assert list(out.glob("*.seg.dcm")), f"no DICOM SEG written for the {name} series"
        results[name] = findings
    clean, scout = results["clean"], results["scout"]
    assert scout["lungs"] == clean["lungs"] and scout["emphysema"] == clean["emphysema"]
    for key in ("size_xyz", "spacing_xyz_mm", "series_uid"):
        assert scout["input"][key] == clean["input"][key]
    assert scout["warnings"] == clean["warnings"]


def test_a_series_of_localizers_only_is_kept(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "scout", box_phantom(shape=(12, 32, 32)),
                       ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert read_scan(tmp_path / "scout").shape_xyz == (32, 32, 12)


def test_several_patients_are_an_error_listing_them(tmp_path: Path, capsys) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    first = write_dicom_series(tmp_path / "in" / "a", hu, PatientID="PAT-A", StudyDate="20240102")
    second = write_dicom_series(tmp_path / "in" / "b", hu[:11], PatientID="PAT-B", StudyDate="20240305")
    out = tmp_path / "out"
    code, _, stderr = run_cli(["run", str(tmp_path / "in"), "-o", str(out), "--device", "cpu", "--progress", "none"],
                              capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == AmbiguousInputError.exit_code == 14
    assert len(errors) == 1 and "2 patients" in errors[0] and "--series" in errors[0], stderr
    for text in ("PAT-A", "PAT-B", first, second, "20240102", "12 slices", "11 slices"):
        assert text in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".lungai-*"))
    assert read_scan(tmp_path / "in", ReadOptions(series_uid=second)).series_uid == second


def test_several_studies_of_one_patient_are_an_error(tmp_path: Path) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    write_dicom_series(tmp_path / "baseline", hu, PatientID="PAT-A")
    write_dicom_series(tmp_path / "follow-up", hu, PatientID="PAT-A")
    with pytest.raises(AmbiguousInputError, match="2 studies"):
        read_scan(tmp_path)


def test_series_of_one_study_are_no_error(tmp_path: Path) -> None:
    hu, study = box_phantom(shape=(12, 32, 32)), generate_uid()
    chosen = write_dicom_series(tmp_path / "thin", hu, study_uid=study)
    write_dicom_series(tmp_path / "thick", hu[:6], study_uid=study)
    assert read_scan(tmp_path).series_uid == chosen


def tcia_zip(folder: Path, array: np.ndarray, spacing: tuple[float, float, float], **header: object) -> Path:
    """A TCIA-style download: ``dicom.zip`` holding ``dicom/*.dcm`` (without PatientBirthDate and the
    other empty patient and study attributes: the DICOM SEG is written all the same)."""
    write_dicom_series(folder / "dicom", array, spacing=spacing, **header)
    archive = folder / "dicom.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((folder / "dicom").iterdir()):
            zf.write(path, f"dicom/{path.name}")
    shutil.rmtree(folder / "dicom")
    return archive


def test_output_names_come_from_the_dicom_header(tmp_path: Path) -> None:
    archive = tcia_zip(tmp_path, box_phantom(shape=(12, 32, 32)), (0.8, 0.8, 2.5),
                       PatientID="LIDC/IDRI 0009", StudyDate="20000101", SeriesNumber=3000566)
    assert scan_name(archive) == "LIDC_IDRI_0009_20000101_3000566"
    assert read_scan(archive).name == "LIDC_IDRI_0009_20000101_3000566"
    assert scan_name(tmp_path / "chest scan.nii.gz") == "chest scan"
    assert safe_name("../a b:c*?") == "a_b_c"


def test_two_tcia_zips_in_a_row_get_their_own_outputs(tmp_path: Path, monkeypatch, capsys) -> None:
    phantom = make_phantom().image
    array, spacing = sitk.GetArrayFromImage(phantom), phantom.GetSpacing()
    scans = [tcia_zip(tmp_path / patient, array, spacing, PatientID=patient, StudyDate="20240102", SeriesNumber=2)
             for patient in ("LIDC-IDRI-0901", "LIDC-IDRI-0902")]
    monkeypatch.chdir(tmp_path)
    for scan in scans:
        code, _, stderr = run_cli(["-q", "run", str(scan), "--tasks", "lungs", "--device", "cpu"], capsys)
        assert code == 0, stderr
    for patient in ("LIDC-IDRI-0901", "LIDC-IDRI-0902"):
        folder = tmp_path / f"{patient}_20240102_2_lungai"
        assert (folder / f"{patient}_20240102_2.seg.nrrd").is_file()
        assert (folder / f"{patient}_20240102_2.seg.dcm").is_file()
