"""The numbers readers look slices up by: DICOM InstanceNumber, or the file's 1-based slice index."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from lungai.io.image_numbers import image_numbers
from lungai.io.reader import read_scan


def test_real_dicom_slices_get_their_instance_numbers(lidc20_folder: Path) -> None:
    ct = read_scan(lidc20_folder)
    numbers = image_numbers(ct)
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(lidc20_folder.iterdir())]
    by_height = sorted(headers, key=lambda header: float(header.ImagePositionPatient[2]))  # LPS k: feet first
    assert numbers.kind == "instance" and numbers.description == "DICOM image number (InstanceNumber)"
    assert numbers.numbers == {k: int(header.InstanceNumber) for k, header in enumerate(by_height)}
    top = int(by_height[-1].InstanceNumber)
    assert numbers.label(19) == f"image {top}"
    assert numbers.span(0, 19) == f"images {top}-{top + 19}"  # LIDC-IDRI-0001 numbers from the head down
    assert numbers.label(25) is None


def test_dicom_without_usable_instance_numbers_counts_from_the_head(lidc20_folder: Path) -> None:
    ct = read_scan(lidc20_folder)
    ct.dicom_headers = [copy.deepcopy(header) for header in ct.dicom_headers]
    ct.dicom_headers[3].InstanceNumber = ct.dicom_headers[5].InstanceNumber  # repeated, as in merged series
    del ct.dicom_headers[4].InstanceNumber
    numbers = image_numbers(ct)
    assert numbers.kind == "index" and "counted from the head" in numbers.description
    assert (numbers.label(19), numbers.label(0)) == ("slice 1", "slice 20")


def marked_scan(path: Path, direction: tuple[float, ...]) -> Path:
    """A 12-slice NRRD whose first stored slice is brighter than the rest, with the given axes."""
    voxels = np.full((12, 16, 16), -800, dtype=np.int16)
    voxels[0] = 40
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((1.0, 1.0, 2.5))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def test_file_slices_are_numbered_in_the_files_order(tmp_path: Path) -> None:
    for name, direction in [("feet_first", (1, 0, 0, 0, 1, 0, 0, 0, 1)), ("head_first", (1, 0, 0, 0, 1, 0, 0, 0, -1))]:
        ct = read_scan(marked_scan(tmp_path / f"{name}.nrrd", tuple(float(v) for v in direction)))
        first_stored = int(np.argmax(sitk.GetArrayViewFromImage(ct.image).mean(axis=(1, 2))))
        numbers = image_numbers(ct)
        assert numbers.kind == "index" and numbers.description == "slice number in the file's order, 1-based"
        assert numbers.label(first_stored) == "slice 1", name
        assert sorted(numbers.numbers.values()) == list(range(1, 13))


def test_a_file_of_sagittal_slices_has_no_axial_numbers(tmp_path: Path) -> None:
    # Stored axes: x runs superior, y posterior, z left: each stored slice is sagittal.
    ct = read_scan(marked_scan(tmp_path / "sagittal.nrrd", (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)))
    numbers = image_numbers(ct)
    assert numbers.numbers == {} and "not axial" in numbers.description
    assert numbers.label(0) is None and numbers.span(0, 3) is None
