"""Readers for datasets users bring: LUNA16, nnU-Net raw / MSD, weak-label CSVs (tiny synthetic files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.data.holdout import WHOLE_SCAN_TEST_SERIES
from lungai.data.luna16 import list_luna16
from lungai.data.nnunet_raw import list_nnunet_raw
from lungai.data.weak_labels import read_weak_labels
from lungai.errors import InputNotFoundError, UnreadableInputError

SHAPE_ZYX = (12, 20, 24)


def _ct(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = np.full(SHAPE_ZYX, -1000, np.int16)
    body = (SHAPE_ZYX[0] - 2, SHAPE_ZYX[1] - 4, SHAPE_ZYX[2] - 4)
    array[1:-1, 2:-2, 2:-2] = 40 + rng.integers(-20, 20, body)
    array[3:9, 5:15, 4:11] = -850  # a "lung"
    return array


def _write(array: np.ndarray, path: Path, spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
           origin: tuple[float, float, float] = (-10.0, -8.0, -15.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


# LUNA16 ---------------------------------------------------------------------------------------

def test_luna16_cases_with_world_nodules(tmp_path: Path) -> None:
    held_out = WHOLE_SCAN_TEST_SERIES["LIDC-IDRI-0001"]
    for uid, subset in (("1.2.3.1", "subset0"), ("1.2.3.2", "subset1"), (held_out, "subset1")):
        _write(_ct(), tmp_path / subset / f"{uid}.mhd")
    (tmp_path / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        "1.2.3.1,-2.0,0.0,-5.0,6.5\n1.2.3.1,3.2,1.6,0.0,4.0\n1.9.9,1,2,3,5\n"
        f"{held_out},1,2,3,5\n")
    listing = list_luna16(tmp_path)
    assert [c.seriesuid for c in listing.cases] == ["1.2.3.1", "1.2.3.2"]
    assert listing.rows_without_scans == ["1.9.9"] and listing.excluded_test_series == [held_out]
    first, second = listing.cases
    assert first.patient_id == first.case_id == "1.2.3.1" and first.image_path.suffix == ".mhd"
    assert [n.diameter_mm for n in first.nodules] == [6.5, 4.0] and second.nodules == ()
    volume = first.load()
    assert volume.image.GetSize() == SHAPE_ZYX[::-1]
    assert first.nodules[0].centre_lps == (-2.0, 0.0, -5.0)
    assert first.nodules[0].index_zyx(volume.image) == pytest.approx((4.0, 10.0, 10.0))


def test_luna16_errors(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        list_luna16(tmp_path / "absent")
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,diameter_mm\n")
    with pytest.raises(UnreadableInputError, match="coordZ"):
        list_luna16(tmp_path)
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,a,0,0,5\n")
    with pytest.raises(UnreadableInputError, match="line 2"):
        list_luna16(tmp_path)
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with pytest.raises(InputNotFoundError, match="no .mhd"):
        list_luna16(tmp_path)


# nnU-Net raw / MSD ----------------------------------------------------------------------------

def _label_map() -> np.ndarray:
    label = np.zeros(SHAPE_ZYX, np.uint8)
    label[4:7, 8:12, 6:9] = 1
    return label


def test_nnunet_v2_raw(tmp_path: Path) -> None:
    meta = {"channel_names": {"0": "CT", "1": "lung_mask"}, "labels": {"background": 0, "nodule": 1},
            "numTraining": 2, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    for case in ("case_001", "case_002", "case_003"):
        _write(_ct(), tmp_path / "imagesTr" / f"{case}_0000.nii.gz")
        _write((_ct() < -500).astype(np.uint8), tmp_path / "imagesTr" / f"{case}_0001.nii.gz")
    for case in ("case_001", "case_002", "case_004"):
        _write(_label_map(), tmp_path / "labelsTr" / f"{case}.nii.gz")
    dataset = list_nnunet_raw(tmp_path)
    assert dataset.channel_names == {0: "CT", 1: "lung_mask"}
    assert dataset.labels == {0: "background", 1: "nodule"}
    assert [c.case_id for c in dataset.cases] == ["case_001", "case_002"]
    assert dataset.incomplete_cases == ["case_004"] and dataset.images_without_labels == ["case_003"]
    sample = dataset.cases[0].load()
    assert sample.channels.shape == (2, *SHAPE_ZYX) and sample.channels.dtype == np.float32
    assert sample.label is not None and sample.label.dtype == np.uint8 and sample.label.sum() == 36
    assert sample.spacing_zyx == pytest.approx((2.5, 0.8, 0.8)) and dataset.cases[0].patient_id == "case_001"


def test_msd_layout(tmp_path: Path) -> None:
    meta = {"name": "Lung", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cancer"},
            "training": [{"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"},
                         {"image": "./imagesTr/lung_002.nii.gz", "label": "./labelsTr/lung_002.nii.gz"}],
            "test": ["./imagesTs/lung_003.nii.gz"]}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    _write(_ct(), tmp_path / "imagesTr" / "lung_001.nii.gz")
    _write(_label_map(), tmp_path / "labelsTr" / "lung_001.nii.gz")
    _write(_label_map(), tmp_path / "labelsTr" / "lung_002.nii.gz")
    dataset = list_nnunet_raw(tmp_path)
    assert dataset.channel_names == {0: "CT"} and dataset.labels == {0: "background", 1: "cancer"}
    assert [c.case_id for c in dataset.cases] == ["lung_001"] and dataset.incomplete_cases == ["lung_002"]
    assert dataset.cases[0].load().channels.shape == (1, *SHAPE_ZYX)


def test_nnunet_label_off_grid_and_bad_json(tmp_path: Path) -> None:
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0}}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    _write(_ct(), tmp_path / "imagesTr" / "a_0000.nii.gz")
    _write(_label_map(), tmp_path / "labelsTr" / "a.nii.gz", spacing=(1.0, 1.0, 1.0))
    with pytest.raises(UnreadableInputError, match="not on the grid"):
        list_nnunet_raw(tmp_path).cases[0].load()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
    with pytest.raises(UnreadableInputError, match="channel_names"):
        list_nnunet_raw(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"},
                                                       "labels": {"background": 0, "lungs": [1, 2]}}))
    with pytest.raises(UnreadableInputError, match="region-based"):
        list_nnunet_raw(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(UnreadableInputError, match="JSON"):
        list_nnunet_raw(tmp_path)
    with pytest.raises(InputNotFoundError):
        list_nnunet_raw(tmp_path / "absent")


# weak labels ----------------------------------------------------------------------------------

def test_weak_labels(tmp_path: Path) -> None:
    _write(_ct(1), tmp_path / "scans" / "a.nrrd")
    _write(_ct(2), tmp_path / "scans" / "b.nii.gz")
    absolute = _write(_ct(3), tmp_path / "elsewhere" / "c.mha")
    csv_path = tmp_path / "labels" / "weak.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("path,label,patient_id\n../scans/a.nrrd,1,P1\n../scans/b.nii.gz,0,P1\n"
                        f"{absolute},1,P2\n../scans/a.nrrd.gone,1,LIDC-IDRI-0002\n")
    cases = read_weak_labels(csv_path)
    assert [(c.patient_id, c.label) for c in cases] == [("P1", 1), ("P1", 0), ("P2", 1)]
    assert cases[0].image_path == csv_path.parent / "../scans/a.nrrd" and cases[2].image_path == absolute
    assert cases[0].case_id == "../scans/a.nrrd"
    assert cases[1].load().image.GetSize() == SHAPE_ZYX[::-1]


def test_weak_labels_without_patient_ids(tmp_path: Path) -> None:
    _write(_ct(), tmp_path / "a.nrrd")
    (tmp_path / "weak.csv").write_text(" path , label \na.nrrd,0\n")
    (case,) = read_weak_labels(tmp_path / "weak.csv")
    assert case.patient_id == case.case_id == "a.nrrd" and case.label == 0


@pytest.mark.parametrize(("text", "error", "match"), [
    ("volume,label\na.nrrd,1\n", UnreadableInputError, "lacks the column.*path"),
    ("path\na.nrrd\n", UnreadableInputError, "label"),
    ("path,label\na.nrrd,yes\n", UnreadableInputError, "line 2.*not an integer"),
    ("path,label\na.nrrd,1\na.nrrd,0\n", UnreadableInputError, "listed twice"),
    ("path,label\n,1\n", UnreadableInputError, "empty path"),
    ("path,label\na.nrrd,1\nmissing1.nrrd,0\nmissing2.nrrd,1\n", InputNotFoundError, "2 scan.*missing1.nrrd"),
])
def test_weak_label_errors(tmp_path: Path, text: str, error: type, match: str) -> None:
    _write(_ct(), tmp_path / "a.nrrd")
    (tmp_path / "weak.csv").write_text(text)
    with pytest.raises(error, match=match):
        read_weak_labels(tmp_path / "weak.csv")


def test_weak_label_csv_missing(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        read_weak_labels(tmp_path / "absent.csv")
