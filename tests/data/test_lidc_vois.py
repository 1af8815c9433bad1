"""The LIDC VOI dataset: joining nodules.csv to files, label rules, lazy loading."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from shared_data import require

from lungai.data.lidc_vois import (
    LABEL_RULES,
    REQUIRED_COLUMNS,
    LIDCVOIDataset,
    label_from_row,
    list_vois,
    reader_ratings,
)
from lungai.errors import UnreadableInputError


def _row(diagnosis: int = 0, malignancy: int = 3, readers: str = "") -> dict[str, str]:
    return {"Diagnosis_value": str(diagnosis), "Malignancy_value": str(malignancy),
            "reader_malignancy": readers}


@pytest.mark.parametrize(("readers", "expected"), [
    ("[2, 1, 1, 1]", 0), ("[1, 2]", 0), ("[2, 2, 3]", 0),
    ("[4, 4, 3]", 1), ("[5, 4]", 1), ("[3, 4, 5, 5]", 1),
    ("[3, 3, 3, 2]", None), ("[2, 3]", None), ("[3, 4]", None), ("[2, 2, 4, 4]", None), ("[3]", None),
])
def test_median_excl3(readers: str, expected: int | None) -> None:
    assert label_from_row(_row(malignancy=3, readers=readers), "median_excl3") == expected


@pytest.mark.parametrize(("malignancy", "expected"), [(1, 0), (2, 0), (3, None), (4, 1), (5, 1)])
def test_median_excl3_falls_back_to_malignancy_value(malignancy: int, expected: int | None) -> None:
    assert label_from_row(_row(malignancy=malignancy, readers=""), "median_excl3") == expected


def test_ge2_readers_gt3_is_the_diagnosis_value() -> None:
    # The file's Diagnosis_value wins, even where it disagrees with the readers' list.
    assert label_from_row(_row(diagnosis=1, readers="[1, 1, 1]"), "ge2_readers_gt3") == 1
    assert label_from_row(_row(diagnosis=0, readers="[5, 5, 5]"), "ge2_readers_gt3") == 0


def test_bad_rule_and_bad_ratings() -> None:
    with pytest.raises(ValueError, match="unknown label rule"):
        label_from_row(_row(), "majority")
    with pytest.raises(ValueError):
        reader_ratings({"reader_malignancy": "[4, 'x']"})
    assert reader_ratings({"reader_malignancy": " "}) is None


def _write_voi(path: Path, array: np.ndarray, direction: tuple[float, ...] | None = None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 1.25))
    image.SetOrigin((-20.0, 30.0, -100.0))
    if direction:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _write_dataset(root: Path, rows: list[tuple[str, int, int, str]], files: list[str]) -> None:
    """rows: (patient, nodule, diagnosis, reader ratings); files: stems written to image/ and mask/."""
    columns = ["patient_id", "nodule_id", "seriesuid", "diameter_mm", "Diagnosis_value", "Malignancy_value",
               "reader_malignancy", "Texture_value"]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "nodules.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for patient, nodule, diagnosis, readers in rows:
            writer.writerow([patient, nodule, "1.2.3", 6.5, diagnosis, 3, readers, 5])
    image = np.full((4, 8, 10), -800, np.int16)
    image[1:3, 3:5, 4:7] = 40
    for stem in files:
        _write_voi(root / "image" / f"{stem}.nii.gz", image)
        _write_voi(root / "mask" / f"{stem}.nii.gz", (image > 0).astype(np.int16))


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "vois"
    _write_dataset(root, [("LIDC-IDRI-0100", 1, 0, "[1, 2, 2]"), ("LIDC-IDRI-0100", 2, 1, "[4, 5, 3]"),
                          ("LIDC-IDRI-0101", 10, 0, "[3, 3]"), ("LIDC-IDRI-0102", 1, 0, ""),
                          ("LIDC-IDRI-0002", 1, 1, "[5, 4]")],
                   ["LIDC-IDRI-0100_R_1", "LIDC-IDRI-0100_R_2", "LIDC-IDRI-0101_R_10", "LIDC-IDRI-0103_R_1",
                    "LIDC-IDRI-0002_R_1"])
    return root


def test_listing_joins_rows_to_files(small_dataset: Path) -> None:
    listing = list_vois(small_dataset)
    assert [c.case_id for c in listing.cases] == ["LIDC-IDRI-0100_R_1", "LIDC-IDRI-0100_R_2",
                                                  "LIDC-IDRI-0101_R_10"]
    assert listing.rows_without_files == ["LIDC-IDRI-0102_R_1"]
    assert listing.files_without_rows == ["LIDC-IDRI-0103_R_1.nii.gz"]
    assert listing.excluded_test_patients == ["LIDC-IDRI-0002"]
    case = listing.cases[2]
    assert (case.patient_id, case.nodule_id, case.diameter_mm) == ("LIDC-IDRI-0101", 10, 6.5)
    assert case.image_path == small_dataset / "image" / "LIDC-IDRI-0101_R_10.nii.gz"
    assert case.mask_path == small_dataset / "mask" / "LIDC-IDRI-0101_R_10.nii.gz"
    assert dict(case.labels) == {"ge2_readers_gt3": 0, "median_excl3": None}
    assert case.analysis["Texture_value"] == "5"


def test_listing_is_lazy_and_loading_gives_zyx_arrays(small_dataset: Path) -> None:
    (small_dataset / "image" / "LIDC-IDRI-0100_R_2.nii.gz").write_bytes(b"not an image")
    case = list_vois(small_dataset).cases[0]  # listing never opened the broken file
    sample = case.load("median_excl3")
    assert sample.image.dtype == np.float32 and sample.mask.dtype == np.uint8
    assert sample.image.shape == sample.mask.shape == (4, 8, 10)
    assert sample.spacing_zyx == pytest.approx((1.25, 0.7, 0.7))
    assert sample.origin_lps == pytest.approx((-20.0, 30.0, -100.0))
    assert set(np.unique(sample.mask)) == {0, 1} and sample.image[sample.mask > 0].min() == 40
    assert sample.label == 0
    with pytest.raises(UnreadableInputError):
        list_vois(small_dataset).cases[1].load()


def test_loading_reorients_to_lps(tmp_path: Path) -> None:
    root = tmp_path / "vois"
    _write_dataset(root, [("LIDC-IDRI-0200", 1, 0, "[1]")], [])
    array = np.zeros((3, 4, 5), np.int16)
    array[0, 0, 0] = 1  # the voxel at the origin
    flipped = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    _write_voi(root / "image" / "LIDC-IDRI-0200_R_1.nii.gz", array, flipped)
    _write_voi(root / "mask" / "LIDC-IDRI-0200_R_1.nii.gz", array, flipped)
    sample = list_vois(root).cases[0].load()
    assert sample.image[0, -1, -1] == 1 and sample.mask[0, -1, -1] == 1


def test_dataset_drops_excluded_cases(small_dataset: Path) -> None:
    cases = list_vois(small_dataset).cases
    assert LIDCVOIDataset(cases, "ge2_readers_gt3").labels == [0, 1, 0]
    dataset = LIDCVOIDataset(cases, "median_excl3")
    assert len(dataset) == 2 and dataset.labels == [0, 1]
    assert dataset[1].label == 1 and dataset[1].case_id == "LIDC-IDRI-0100_R_2"
    with pytest.raises(ValueError):
        LIDCVOIDataset(cases, "unknown")


def test_missing_column(tmp_path: Path) -> None:
    (tmp_path / "nodules.csv").write_text("patient_id,nodule_id\nLIDC-IDRI-0100,1\n")
    with pytest.raises(UnreadableInputError, match="diameter_mm"):
        list_vois(tmp_path)


def test_real_vois(data_root: Path) -> None:
    root = require(data_root / "lidc_vois")
    listing = list_vois(root)
    assert len(listing.cases) == 779 and len({c.patient_id for c in listing.cases}) == 428
    assert listing.rows_without_files == [] and listing.files_without_rows == []
    assert listing.excluded_test_patients == []
    assert {c.case_id for c in listing.cases} == {p.name[:-7] for p in (root / "image").glob("*.nii.gz")}
    assert set(LABEL_RULES) <= set(listing.cases[0].labels)
    assert set(REQUIRED_COLUMNS) <= set(listing.cases[0].analysis)
    counts = {rule: sum(c.label(rule) is not None for c in listing.cases) for rule in LABEL_RULES}
    assert counts["ge2_readers_gt3"] == 779 and 300 < counts["median_excl3"] < 779
    case = next(c for c in listing.cases if c.case_id == "LIDC-IDRI-0004_R_1")
    sample = case.load("ge2_readers_gt3")
    assert sample.image.dtype == np.float32 and sample.mask.dtype == np.uint8 and sample.image.ndim == 3
    assert sample.label == 0 and sample.mask.sum() > 0 and sample.image.min() >= -1100
    # The mask centroid lies at the row's centre (the file <-> row mapping).
    index = np.argwhere(sample.mask > 0).mean(axis=0)
    centre = np.asarray(sample.origin_lps) + (index * np.asarray(sample.spacing_zyx))[::-1]
    row = case.analysis
    assert np.linalg.norm(centre - [float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])]) < 3.0
