"""Tests of emphysema densitometry (LAA percentages, Perc15, volume, mean density)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from shared_data import require
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai import labels
from lungai.data.phantom import LUNG_HU, make_phantom
from lungai.io.reader import read_scan
from lungai.io.volume import CTVolume
from lungai.preprocessing.densitometry import (
    LAA_856_NOTE,
    NO_HEADER_NOTE,
    DensitometryConfig,
    densitometry_notes,
    densitometry_warnings,
    describe_acquisition,
    is_sharp_kernel,
    measure_densitometry,
)

RIGHT, LEFT = labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value


def _images(hu: np.ndarray, lungs: np.ndarray,
            spacing: tuple[float, float, float] = (1.0, 1.0, 2.0)) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing(spacing)
    label_image = sitk.GetImageFromArray(lungs.astype(np.uint8))
    label_image.CopyInformation(image)
    return image, label_image


def test_tiny_array_known_answer() -> None:
    right_values = [-1000, -960, -950, -940, -900, -860, -850, -800, -700, -500]
    left_values = [-1000, -900, -800, -700]
    hu = np.zeros((1, 3, 10), dtype=np.int16)
    lungs = np.zeros_like(hu, dtype=np.uint8)
    hu[0, 0, :] = right_values
    lungs[0, 0, :] = RIGHT
    hu[0, 1, :4] = left_values
    lungs[0, 1, :4] = LEFT
    hu[0, 2, :] = -1000  # outside the lungs: ignored
    result = measure_densitometry(*_images(hu, lungs))

    right = result.right
    assert right is not None
    assert right.laa_percent[-950] == pytest.approx(20.0)  # -1000, -960; -950 is not below
    assert right.laa_percent[-910] == pytest.approx(40.0)  # ... -950, -940
    assert right.laa_percent[-856] == pytest.approx(60.0)  # ... -900, -860
    # 15th percentile of 10 sorted values: position 0.15 * 9 = 1.35 -> -960 + 0.35 * 10
    assert right.percentile_hu == pytest.approx(-956.5)
    assert right.mean_hu == pytest.approx(-846.0)
    assert right.volume_ml == pytest.approx(10 * 2.0 / 1000.0)

    assert result.left is not None
    assert result.left.laa_percent[-950] == pytest.approx(25.0)
    assert result.left.mean_hu == pytest.approx(-850.0)
    total = result.total
    assert total.laa_percent[-950] == pytest.approx(100.0 * 3 / 14)
    assert total.volume_ml == pytest.approx(14 * 2.0 / 1000.0)
    assert total.mean_hu == pytest.approx((sum(right_values) + sum(left_values)) / 14)


def test_to_dict_is_json_ready() -> None:
    hu = np.array([[[-1000, -900, -800, -700]]])
    lungs = np.array([[[RIGHT, RIGHT, LEFT, LEFT]]])
    as_dict = measure_densitometry(*_images(hu, lungs)).to_dict()
    assert set(as_dict) == {"right", "left", "total"}
    assert set(as_dict["total"]) == {"laa_950_percent", "laa_910_percent", "laa_856_percent",
                                     "perc15_hu", "volume_ml", "mean_hu"}
    assert as_dict["right"]["laa_950_percent"] == pytest.approx(50.0)
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_missing_lung_is_none_and_config_changes_keys() -> None:
    hu = np.array([[[-1000, -900, -800, -700]]])
    lungs = np.array([[[RIGHT, RIGHT, RIGHT, 0]]])
    config = DensitometryConfig(laa_thresholds_hu=(-950,), percentile=10.0)
    result = measure_densitometry(*_images(hu, lungs), config)
    assert result.left is None
    assert result.to_dict()["left"] is None
    assert set(result.to_dict()["right"]) == {"laa_950_percent", "perc10_hu", "volume_ml",
                                              "mean_hu"}


def test_rejects_mismatched_grid_and_empty_mask() -> None:
    hu = np.full((2, 4, 4), -900)
    lungs = np.zeros((2, 4, 4))
    image, label_image = _images(hu, lungs)
    with pytest.raises(ValueError, match="no lung voxels"):
        measure_densitometry(image, label_image)
    shifted = sitk.Image(label_image)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="same grid"):
        measure_densitometry(image, shifted)


def test_phantom_matches_hand_computation() -> None:
    phantom = make_phantom()
    result = measure_densitometry(phantom.image, phantom.lung_labels)
    hu = sitk.GetArrayFromImage(phantom.image).astype(float)
    lungs = sitk.GetArrayFromImage(phantom.lung_labels)
    voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
    for value, measured in ((RIGHT, result.right), (LEFT, result.left), (None, result.total)):
        values = hu[lungs > 0] if value is None else hu[lungs == value]
        assert measured is not None
        assert measured.volume_ml == pytest.approx(values.size * voxel_ml)
        assert measured.mean_hu == pytest.approx(values.mean())
        assert measured.laa_percent[-950] == pytest.approx(100.0 * np.mean(values < -950))
        assert measured.laa_percent[-856] == pytest.approx(100.0 * np.mean(values < -856))
        assert measured.percentile_hu == pytest.approx(np.percentile(values, 15))
    # Parenchyma is -850 HU with 20 HU noise: Perc15 near -850 - 1.04 * 20, almost no LAA-950.
    assert result.total.percentile_hu == pytest.approx(LUNG_HU - 1.04 * 20.0, abs=6.0)
    assert result.total.laa_percent[-950] < 0.5


@pytest.mark.parametrize(("kernel", "sharp"), [
    ("LUNG", True), ("BONEPLUS", True), ("EDGE", True), ("B70f", True), ("B60f", True), ("Br64", True),
    ("Bl57", True), ("I70f", True), ("FC52", True), ("FC86", True), ("L", True), ("YA", True), ("YB", True),
    ("Br59/3", True), ("Br38f\\3", False),
    ("STANDARD", False), ("SOFT", False), ("B30f", False), ("B45f", False), ("Br38f/3", False), ("B", False),
    ("C", False), ("FC18", False), ("", False), (None, False),
])
def test_the_sharp_kernel_table(kernel: str | None, sharp: bool) -> None:
    assert is_sharp_kernel(kernel) is sharp


def _series(folder: Path, thickness_mm: float, **attributes: str) -> Path:
    """A small synthetic DICOM series with extra header attributes (e.g. ConvolutionKernel)."""
    write_dicom_series(folder, box_phantom(shape=(12, 32, 32)), spacing=(0.7, 0.7, thickness_mm))
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return folder


def test_header_warnings_on_a_thick_sharp_contrast_series(tmp_path: Path) -> None:
    volume = read_scan(_series(tmp_path / "dicom", 5.0, ConvolutionKernel="B70f", ContrastBolusAgent="IV"))
    acquisition = describe_acquisition(volume)
    assert (acquisition.slice_thickness_mm, acquisition.thickness_source) == (5.0, "DICOM SliceThickness")
    assert (acquisition.kernel, acquisition.contrast_agent) == ("B70f", "IV")
    thickness, kernel, contrast = densitometry_warnings(acquisition)
    assert "slices are 5.0 mm thick" in thickness and "'B70f'" in kernel and "'IV'" in contrast
    assert densitometry_notes(acquisition) == [LAA_856_NOTE]


def test_no_header_warnings_on_a_thin_standard_plain_series(tmp_path: Path) -> None:
    volume = read_scan(_series(tmp_path / "dicom", 3.0, ConvolutionKernel="STANDARD", ContrastBolusAgent="NONE"))
    acquisition = describe_acquisition(volume)
    assert acquisition.contrast_agent is None and acquisition.slice_thickness_mm == 3.0  # 3 mm is not above 3
    assert densitometry_warnings(acquisition) == []


def test_input_without_a_header_uses_the_spacing_and_says_what_was_not_checked(tmp_path: Path) -> None:
    volume = read_scan(write_image(box_phantom(), tmp_path / "scan.nrrd", spacing=(0.7, 0.7, 5.0)))
    acquisition = describe_acquisition(volume)
    assert (acquisition.slice_thickness_mm, acquisition.thickness_source) == (5.0, "voxel spacing")
    assert acquisition.kernel is None and acquisition.contrast_agent is None
    [thickness] = densitometry_warnings(acquisition)
    assert "(voxel spacing;" in thickness
    assert densitometry_notes(acquisition) == [LAA_856_NOTE, NO_HEADER_NOTE]


def _first_header(archive: Path) -> pydicom.Dataset:
    with zipfile.ZipFile(archive) as files:
        name = sorted(n for n in files.namelist() if n.endswith(".dcm"))[0]
        return pydicom.dcmread(io.BytesIO(files.read(name)), stop_before_pixels=True)


@pytest.mark.parametrize(("archive", "expected"), [
    # Philips, 5 mm, kernel L (lung), no ContrastBolusAgent
    ("lung_pet_ct_dx/A0001/dicom.zip", ["slices are 5.0 mm thick", "sharp reconstruction kernel 'L'"]),
    # GE, 2.5 mm, STANDARD kernel, ContrastBolusAgent IV
    ("lidc_scans/LIDC-IDRI-0001/dicom.zip", ["contrast-enhanced scan (DICOM ContrastBolusAgent 'IV')"]),
])
def test_header_warnings_on_real_dicom(data_root: Path, archive: str, expected: list[str]) -> None:
    header = _first_header(require(data_root / archive))
    volume = CTVolume(image=sitk.Image(8, 8, 8, sitk.sitkInt16), source=archive, format="dicom-zip",
                      dicom_headers=[header])
    warnings = densitometry_warnings(describe_acquisition(volume))
    assert len(warnings) == len(expected)
    assert all(text in warning for text, warning in zip(expected, warnings))
