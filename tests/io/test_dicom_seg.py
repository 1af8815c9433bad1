"""The DICOM SEG writer on real DICOM series: dciodvfy-valid, and read back with highdicom."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from outputs_cases import CASE_STRUCTURES, LIDC_0001_ZIP, PET_CT_ZIP, Case, build_case, require_program
from shared_data import require

from lungai import __version__, labels
from lungai.io.dicom_seg import SegReferenceError, write_dicom_seg
from lungai.io.reader import read_scan

EXPECTED_SEGMENTS = ["Right lung", "Left lung", "Nodule 1", "Nodule 2", "Mass 3"]


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy (dicom3tools) prints for a file."""
    dciodvfy = require_program("dciodvfy", package="dicom3tools")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.strip() == "Segmentation" for line in lines), f"dciodvfy did not check it as a SEG: {lines}"
    return [line for line in lines if line.startswith("Error")]


def expected_frames(case: Case) -> int:
    """Frames of a BINARY SEG without empty frames: one per (segment, slice holding it)."""
    voxels = sitk.GetArrayViewFromImage(case.label_image)
    values = [value for value in np.unique(voxels) if value != 0]
    return sum(int((voxels == value).any(axis=(1, 2)).sum()) for value in values)


@pytest.fixture(scope="module")
def written(lidc20_case: Case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seg") / "scan.seg.dcm"
    write_dicom_seg(lidc20_case.label_image, lidc20_case.ct, CASE_STRUCTURES, path)
    return path


def test_passes_dciodvfy(written: Path) -> None:
    assert dciodvfy_errors(written) == []


def test_segments_codes_and_algorithm(written: Path) -> None:
    seg = hd.seg.segread(written)
    assert seg.number_of_segments == len(EXPECTED_SEGMENTS)
    for number, name in zip(seg.segment_numbers, EXPECTED_SEGMENTS):
        description = seg.get_segment_description(number)
        structure = next(s for s in CASE_STRUCTURES if s.name == name)
        assert description.segment_label == name
        assert description.segmented_property_type.value == structure.type[1]
        assert description.segmented_property_type.scheme_designator == "SCT"
        assert description.segmented_property_category.value == structure.category[1]
        regions = [region.value for region in description.anatomic_regions]
        assert regions == ([] if structure.region is None else [structure.region[1]])
        assert description.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = description.algorithm_identification[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("LungAI", __version__)
    assert seg.SoftwareVersions == __version__


def test_references_the_source_series(written: Path, lidc20_case: Case) -> None:
    seg = hd.seg.segread(written)
    headers = lidc20_case.ct.dicom_headers
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == lidc20_case.ct.series_uid
    assert seg.StudyInstanceUID == headers[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != lidc20_case.ct.series_uid
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced <= {ds.SOPInstanceUID for ds in headers}
    assert int(seg.NumberOfFrames) == expected_frames(lidc20_case)


def test_pixels_round_trip(written: Path, lidc20_case: Case) -> None:
    """Each source slice's SEG pixels equal the label image's segments on that slice."""
    seg = hd.seg.segread(written)
    headers = lidc20_case.ct.dicom_headers
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in headers], combine_segments=True,
                                               relabel=False)
    assert lidc20_case.ct.original_orientation == "LPS"  # so file slice k is label slice k
    voxels = sitk.GetArrayFromImage(lidc20_case.label_image)
    structures = {s.name: s for s in CASE_STRUCTURES}
    expected = np.zeros_like(voxels)
    for number, name in enumerate(EXPECTED_SEGMENTS, start=1):
        expected[voxels == structures[name].value] = number
    np.testing.assert_array_equal(pixels, expected)


def test_non_dicom_input_is_refused(lidc20_case: Case, tmp_path: Path) -> None:
    nrrd = tmp_path / "scan.nrrd"
    sitk.WriteImage(lidc20_case.ct.image, str(nrrd))
    with pytest.raises(SegReferenceError, match="not read from DICOM"):
        write_dicom_seg(lidc20_case.label_image, read_scan(nrrd), CASE_STRUCTURES, tmp_path / "x.seg.dcm")
    assert not (tmp_path / "x.seg.dcm").exists()


def test_series_with_blank_uids_is_refused(data_root: Path, tmp_path: Path) -> None:
    """The TotalSegmentator example series was de-identified with its UIDs blanked."""
    ct = read_scan(require(data_root / "totalsegmentator_examples" / "example_ct_dicom"))
    label_image = sitk.Image(ct.image.GetSize(), sitk.sitkUInt8)
    label_image.CopyInformation(ct.image)
    with pytest.raises(SegReferenceError, match="blank SOPClassUID"):
        write_dicom_seg(label_image, ct, labels.STRUCTURES, tmp_path / "x.seg.dcm")


@pytest.mark.parametrize("change", ["shifted", "swapped"])
def test_slices_off_the_axes_or_out_of_order_are_refused(lidc20_case: Case, tmp_path: Path, change: str) -> None:
    """Headers that disagree with the grid must not be referenced silently."""
    ct = lidc20_case.ct
    headers = copy.deepcopy(ct.dicom_headers)
    if change == "shifted":  # 2 mm sideways
        position = [float(v) for v in headers[5].ImagePositionPatient]
        headers[5].ImagePositionPatient = [position[0] + 2.0, *position[1:]]
    else:
        headers[5], headers[6] = headers[6], headers[5]
    with pytest.raises(SegReferenceError, match="slice 6 of 20|slice 7 of 20"):
        write_dicom_seg(lidc20_case.label_image, dataclasses.replace(ct, dicom_headers=headers),
                        CASE_STRUCTURES, tmp_path / "x.seg.dcm")


def test_uneven_spacing_is_accepted(lidc20_case: Case, tmp_path: Path) -> None:
    """A missing slice leaves frame k on file k: still a valid reference, at the files' positions."""
    ct = lidc20_case.ct
    headers = copy.deepcopy(ct.dicom_headers)
    for ds in headers[10:]:
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [*position[:2], position[2] + 2.5]
    path = tmp_path / "x.seg.dcm"
    write_dicom_seg(lidc20_case.label_image, dataclasses.replace(ct, dicom_headers=headers),
                    CASE_STRUCTURES, path)
    seg = hd.seg.segread(path)
    positions = {float(item.PlanePositionSequence[0].ImagePositionPatient[2])
                 for item in seg.PerFrameFunctionalGroupsSequence}
    assert positions <= {float(ds.ImagePositionPatient[2]) for ds in headers}


@pytest.mark.slow
@pytest.mark.parametrize("scan", [LIDC_0001_ZIP, PET_CT_ZIP], ids=["LIDC-IDRI-0001", "Lung-PET-CT-Dx-A0001"])
def test_whole_real_scans(data_root: Path, tmp_path: Path, scan: Path) -> None:
    """Whole zipped series from two vendors (GE, Philips): valid, all slices referenced."""
    case = build_case(require(data_root / scan))
    path = tmp_path / "scan.seg.dcm"
    write_dicom_seg(case.label_image, case.ct, CASE_STRUCTURES, path)
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert [seg.get_segment_description(n).segment_label for n in seg.segment_numbers] == EXPECTED_SEGMENTS
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == case.ct.series_uid
    assert int(seg.NumberOfFrames) == expected_frames(case)


def test_series_stored_right_to_left(lidc20_folder: Path, tmp_path: Path) -> None:
    """Real slices rewritten with columns running right-to-left (so the slice normal points down).

    The SEG's frames must follow the files (right-to-left columns, top slice first), not LPS.
    """
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for path in sorted(lidc20_folder.iterdir()):
        ds = pydicom.dcmread(path)
        column_spacing = float(ds.PixelSpacing[1])
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0] + (int(ds.Columns) - 1) * column_spacing, *position[1:]]
        ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
        ds.save_as(flipped / path.name)
    ct = read_scan(flipped)
    assert ct.original_orientation == "RPI"
    voxels = np.zeros(sitk.GetArrayViewFromImage(ct.image).shape, dtype=np.uint8)
    voxels[3:9, 200:300, 100:180] = labels.LUNG_RIGHT.value  # low x in LPS (patient's right), low z (feet)
    label_image = sitk.GetImageFromArray(voxels)
    label_image.CopyInformation(ct.image)
    path = tmp_path / "scan.seg.dcm"
    write_dicom_seg(label_image, ct, labels.STRUCTURES, path)
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in ct.dicom_headers],
                                               combine_segments=True, relabel=False)
    np.testing.assert_array_equal(pixels, voxels[::-1, :, ::-1])
    assert dciodvfy_errors(path) == []
