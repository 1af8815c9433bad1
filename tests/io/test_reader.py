"""Reading every supported input format into an int16 HU volume in LPS."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid
from shared_data import require
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai.errors import NotCTError, UnreadableInputError
from lungai.io.reader import ReadOptions, read_scan, to_original_orientation


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii", ".mha", ".mhd"])
def test_image_formats_read_as_int16_hu(tmp_path: Path, suffix: str) -> None:
    array = box_phantom()
    path = write_image(array, tmp_path / f"scan{suffix}", spacing=(0.7, 0.7, 2.0), origin=(-10.0, 5.0, 3.0))
    volume = read_scan(path)
    assert volume.image.GetPixelID() == sitk.sitkInt16
    assert volume.image.GetSpacing() == pytest.approx((0.7, 0.7, 2.0))
    assert volume.image.GetOrigin() == pytest.approx((-10.0, 5.0, 3.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), array)
    assert volume.modality is None and volume.series_uid is None


def test_nhdr_detached_header(tmp_path: Path) -> None:
    array = box_phantom()
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(tmp_path / "scan.nhdr"))
    assert (tmp_path / "scan.raw").exists() or any(tmp_path.glob("scan.raw*"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_scan(tmp_path / "scan.nhdr").image), array)


def test_padding_values_clamped_to_minus_1024(tmp_path: Path) -> None:
    array = box_phantom()
    array[0] = -3024
    array[1] = -2048
    volume = read_scan(write_image(array, tmp_path / "scan.nrrd"))
    out = sitk.GetArrayFromImage(volume.image)
    assert out.min() == -1024
    assert (out[0] == -1024).all() and (out[1] == -1024).all()
    assert out.max() == 40


def test_float_image_rounded_to_int16(tmp_path: Path) -> None:
    array = box_phantom().astype(np.float32) + 0.4
    volume = read_scan(write_image(array, tmp_path / "scan.nii.gz"))
    assert volume.image.GetPixelID() == sitk.sitkInt16
    assert sitk.GetArrayFromImage(volume.image).max() == 40


def test_ras_nifti_reoriented_to_lps_and_back(tmp_path: Path) -> None:
    array = box_phantom()
    array[5, 10, 7] = 500  # a marker voxel
    image = sitk.GetImageFromArray(array)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS axis order
    image.SetOrigin((50.0, 60.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "ras.nii.gz"))
    volume = read_scan(tmp_path / "ras.nii.gz")
    assert volume.original_orientation == "RAS"
    assert volume.image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    marker_world = image.TransformIndexToPhysicalPoint((7, 10, 5))
    index = volume.image.TransformPhysicalPointToIndex(marker_world)
    assert volume.image[index] == 500
    back = to_original_orientation(volume.image, volume)
    assert back.GetDirection() == pytest.approx(image.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)


def test_dicom_folder_with_rescale_and_nested_series(tmp_path: Path) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    study = generate_uid()
    uid = write_dicom_series(tmp_path / "study" / "ct", hu, intercept=-1024.0, slope=1.0, study_uid=study)
    write_dicom_series(tmp_path / "study" / "ct_short", hu[:11], study_uid=study)  # fewer slices
    (tmp_path / "study" / "README.txt").write_text("not dicom")
    volume = read_scan(tmp_path / "study")
    assert volume.series_uid == uid
    assert volume.modality == "CT"
    assert volume.format == "dicom"
    assert len(volume.dicom_files) == 12
    assert volume.patient_id is None
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), hu)
    assert volume.image.GetSpacing() == pytest.approx((0.8, 0.8, 2.5))


def test_dicom_series_choice_and_patient_id(tmp_path: Path) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    write_dicom_series(tmp_path / "a", hu)
    other = write_dicom_series(tmp_path / "b", hu[:11])
    volume = read_scan(tmp_path, ReadOptions(series_uid=other, include_patient_id=True))
    assert volume.series_uid == other and volume.shape_xyz[2] == 11
    assert volume.patient_id == "SYNTH-001"
    with pytest.raises(UnreadableInputError, match="not found"):
        read_scan(tmp_path, ReadOptions(series_uid="1.2.3.4"))


def test_dicom_slope_applied(tmp_path: Path) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    write_dicom_series(tmp_path / "s", hu, intercept=-1000.0, slope=2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_scan(tmp_path / "s").image), hu)


def test_dicom_zip(tmp_path: Path) -> None:
    hu = box_phantom(shape=(12, 32, 32))
    write_dicom_series(tmp_path / "s", hu)
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (tmp_path / "s").iterdir():
            zf.write(f, f"nested/{f.name}")
    volume = read_scan(archive)
    assert volume.format == "dicom-zip"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.image), hu)


def test_mr_series_rejected(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "mr", box_phantom(shape=(12, 32, 32)).astype(np.float64) + 1024, modality="MR")
    with pytest.raises(NotCTError, match="modality MR"):
        read_scan(tmp_path / "mr")


def test_input_is_never_modified(tmp_path: Path) -> None:
    path = write_image(box_phantom() - 2000, tmp_path / "scan.nrrd")
    before = path.read_bytes()
    read_scan(path, ReadOptions(force=True))
    assert path.read_bytes() == before


@pytest.mark.slow
def test_real_lidc_dicom_zip(data_root: Path) -> None:
    archive = require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")
    volume = read_scan(archive)
    expected_uid = (data_root / "lidc_scans" / "LIDC-IDRI-0001" / "SERIES_UID").read_text().strip()
    assert volume.series_uid == expected_uid
    assert volume.shape_xyz == (512, 512, 133)
    assert volume.spacing_xyz == pytest.approx((0.703125, 0.703125, 2.5))
    array = sitk.GetArrayViewFromImage(volume.image)
    assert array.min() >= -1024 and array.max() > 1000  # bone in HU, padding clamped


def test_real_dicom_folder_without_uids(data_root: Path, tmp_path: Path) -> None:
    folder = require(data_root / "totalsegmentator_examples" / "example_ct_dicom")
    copy = shutil.copytree(folder, tmp_path / "dicom")
    volume = read_scan(copy)
    assert volume.shape_xyz == (512, 512, 20)
    assert volume.series_uid is None  # de-identified: blank SeriesInstanceUID
