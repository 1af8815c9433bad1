"""The LIDC-IDRI nodule VOI dataset: nodule crops, reader-consensus masks and malignancy labels.

Layout (as in ``lidc_vois/`` of the project's data)::

    <root>/nodules.csv                                one row per nodule
    <root>/image/<patient_id>_R_<nodule_id>.nii.gz    int16 HU crop, native spacing, world origin
    <root>/mask/<patient_id>_R_<nodule_id>.nii.gz     binary nodule mask on the same grid

A file name joins a csv row through the row's ``patient_id`` and ``nodule_id`` columns
(``LIDC-IDRI-0004_R_1.nii.gz`` is patient ``LIDC-IDRI-0004``, nodule 1). On the shipped data
the mask centroid of each file lies within about 2 mm of its row's ``coordX/Y/Z``, which is how
the mapping was checked. :func:`list_vois` reports rows without files and files without rows.

Models see pixels only. The image and mask are the inputs; every other csv column (diameter,
Diagnosis, Malignancy and the other LIDC characteristics, reader ratings, centre, bounding box)
is a label or an analysis variable and must never be fed to a model: the characteristics are
radiologists' descriptions of the very nodule being classified.

LIDC malignancy is radiologists' suspicion, not pathology; report it as such.

Label rules (:data:`LABEL_RULES`):

- ``ge2_readers_gt3``: the file's ``Diagnosis_value`` (1 = malignant: at least 2 readers
  rated malignancy > 3, else 0). Every nodule gets a label.
- ``median_excl3``: the median of the readers' ratings (``reader_malignancy``): <= 2 is benign
  (0), >= 4 malignant (1), anything between (3, or 2.5 / 3.5 for an even number of readers) is
  excluded (``None``). Where ``reader_malignancy`` is empty (55 of 779 rows in the shipped
  file) the rule falls back to ``Malignancy_value`` (the lowest mode of the ratings) under the
  same thresholds.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungai.data.csv_table import read_csv_rows
from lungai.data.holdout import is_held_out
from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.io.volume_arrays import read_array, same_grid

logger = logging.getLogger(__name__)

LABEL_RULES = ("ge2_readers_gt3", "median_excl3")
CSV_NAME = "nodules.csv"
IMAGE_DIR = "image"
MASK_DIR = "mask"
SUFFIX = ".nii.gz"
REQUIRED_COLUMNS = ("patient_id", "nodule_id", "diameter_mm", "Diagnosis_value", "Malignancy_value",
                    "reader_malignancy")
_FILE_NAME = re.compile(r"^(?P<patient>.+)_R_(?P<nodule>\d+)\.nii\.gz$")
_BENIGN_MAX = 2.0
_MALIGNANT_MIN = 4.0


def case_id(patient_id: str, nodule_id: int) -> str:
    """The file stem of a nodule, e.g. ``LIDC-IDRI-0004_R_1``."""
    return f"{patient_id}_R_{nodule_id}"


def reader_ratings(row: Mapping[str, str]) -> list[int] | None:
    """The readers' malignancy ratings of a csv row, or ``None`` where the column is empty."""
    text = (row.get("reader_malignancy") or "").strip()
    if not text:
        return None
    ratings = json.loads(text)
    if not isinstance(ratings, list) or not all(isinstance(r, int) for r in ratings):
        raise ValueError(f"reader_malignancy is not a list of integers: {text!r}")
    return ratings


def _threshold(score: float) -> int | None:
    if score <= _BENIGN_MAX:
        return 0
    if score >= _MALIGNANT_MIN:
        return 1
    return None


def label_from_row(row: Mapping[str, str], rule: str) -> int | None:
    """Malignancy label of one csv row under a label rule.

    Args:
        row: a ``nodules.csv`` row (column name -> text).
        rule: one of :data:`LABEL_RULES` (see the module docstring).

    Returns:
        1 malignant, 0 benign, ``None`` excluded by the rule.

    Raises:
        ValueError: unknown rule, or a malformed rating.
    """
    if rule == "ge2_readers_gt3":
        return int(row["Diagnosis_value"])
    if rule == "median_excl3":
        ratings = reader_ratings(row)
        score = statistics.median(ratings) if ratings else float(row["Malignancy_value"])
        return _threshold(score)
    raise ValueError(f"unknown label rule {rule!r}; choose one of {', '.join(LABEL_RULES)}")


@dataclass(frozen=True)
class VOISample:
    """One loaded nodule VOI.

    Attributes:
        case_id: the file stem, e.g. ``LIDC-IDRI-0004_R_1``.
        image: HU as float32, shape (z, y, x), LPS.
        mask: nodule mask as uint8 (0/1), same shape and grid.
        spacing_zyx: voxel spacing in mm, (z, y, x).
        origin_lps: world position (LPS mm) of voxel (0, 0, 0).
        label: the label under the dataset's rule (``None`` when the rule excludes it).
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    label: int | None = None


@dataclass(frozen=True)
class VOICase:
    """One nodule of the VOI dataset; nothing is read from disk until :meth:`load`.

    Attributes:
        patient_id: e.g. ``LIDC-IDRI-0004``; splits are made on this.
        case_id: the file stem, unique per nodule.
        nodule_id: the csv's ``nodule_id``.
        image_path: the HU crop.
        mask_path: the mask on the same grid.
        diameter_mm: the csv's ``diameter_mm`` (analysis variable, not a model input).
        labels: the label under every rule of :data:`LABEL_RULES`.
        analysis: the full csv row, for analysis only; never a model input.
    """

    patient_id: str
    case_id: str
    nodule_id: int
    image_path: Path
    mask_path: Path
    diameter_mm: float
    labels: Mapping[str, int | None]
    analysis: Mapping[str, str] = field(repr=False, default_factory=dict)

    def label(self, rule: str) -> int | None:
        """The label under ``rule`` (one of :data:`LABEL_RULES`)."""
        if rule not in self.labels:
            raise ValueError(f"unknown label rule {rule!r}; choose one of {', '.join(LABEL_RULES)}")
        return self.labels[rule]

    def load(self, rule: str | None = None) -> VOISample:
        """Read the image and mask.

        Args:
            rule: label rule for :attr:`VOISample.label`; ``None`` leaves the label empty.

        Returns:
            The VOI as numpy arrays in LPS.

        Raises:
            InputNotFoundError, UnreadableInputError: a file is missing or unreadable.
            UnreadableInputError: the mask is not on the image's grid.
        """
        image = read_array(self.image_path, np.float32)
        mask = read_array(self.mask_path, np.uint8)
        if not same_grid(image, mask):
            raise UnreadableInputError(f"mask {self.mask_path} is not on the grid of {self.image_path}",
                                       "re-create the VOI pair")
        return VOISample(case_id=self.case_id, image=image.array, mask=(mask.array > 0).astype(np.uint8),
                         spacing_zyx=image.spacing_zyx, origin_lps=image.origin_lps,
                         label=None if rule is None else self.label(rule))


@dataclass(frozen=True)
class VOIListing:
    """The result of joining ``nodules.csv`` to the files.

    Attributes:
        cases: the nodules that have a row, an image and a mask, in csv order.
        rows_without_files: case ids of rows whose image or mask is missing.
        files_without_rows: file names in ``image/`` or ``mask/`` that no row names.
        excluded_test_patients: whole-scan test patients found and dropped.
    """

    cases: list[VOICase]
    rows_without_files: list[str]
    files_without_rows: list[str]
    excluded_test_patients: list[str]


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """Read ``nodules.csv``, checking that the needed columns are there.

    Raises:
        InputNotFoundError: no such file.
        UnreadableInputError: a required column is missing.
    """
    if not csv_path.is_file():
        raise InputNotFoundError(f"{csv_path} does not exist", f"give a folder laid out like lidc_vois/ "
                                 f"({CSV_NAME}, {IMAGE_DIR}/, {MASK_DIR}/)")
    return [row for _line, row in read_csv_rows(csv_path, REQUIRED_COLUMNS)]


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(f"*{SUFFIX}")} if folder.is_dir() else set()


def _make_case(row: dict[str, str], root: Path) -> VOICase:
    patient, nodule = row["patient_id"], int(row["nodule_id"])
    stem = case_id(patient, nodule)
    return VOICase(patient_id=patient, case_id=stem, nodule_id=nodule,
                   image_path=root / IMAGE_DIR / f"{stem}{SUFFIX}",
                   mask_path=root / MASK_DIR / f"{stem}{SUFFIX}",
                   diameter_mm=float(row["diameter_mm"]),
                   labels={rule: label_from_row(row, rule) for rule in LABEL_RULES}, analysis=dict(row))


def list_vois(root: str | Path) -> VOIListing:
    """List the nodules of a folder laid out like ``lidc_vois/`` without reading any image.

    Rows without files and files without rows are logged as warnings and returned. Patients of
    :data:`~lungai.data.holdout.WHOLE_SCAN_TEST_PATIENTS` (by patient id or ``seriesuid``) are
    dropped in any case (they must not be in the VOI set).

    Args:
        root: the dataset folder.

    Returns:
        The cases and the join's leftovers.

    Raises:
        InputNotFoundError: no ``nodules.csv``.
        UnreadableInputError: a required column is missing, or two rows name the same file.
    """
    root = Path(root)
    rows = read_rows(root / CSV_NAME)
    images, masks = _files(root / IMAGE_DIR), _files(root / MASK_DIR)
    cases: list[VOICase] = []
    rows_without_files: list[str] = []
    excluded: set[str] = set()
    named: set[str] = set()
    for row in rows:
        stem = case_id(row["patient_id"], int(row["nodule_id"]))
        if stem in named:
            raise UnreadableInputError(f"{root / CSV_NAME} has two rows for {stem}", "remove the duplicate")
        named.add(stem)
        if is_held_out(row["patient_id"]) or is_held_out(row.get("seriesuid") or ""):
            excluded.add(row["patient_id"])
            continue
        if f"{stem}{SUFFIX}" in images and f"{stem}{SUFFIX}" in masks:
            cases.append(_make_case(row, root))
        else:
            rows_without_files.append(stem)
    files_without_rows = sorted(name for name in images | masks
                                if not (m := _FILE_NAME.match(name))
                                or case_id(m["patient"], int(m["nodule"])) not in named)
    if excluded:
        logger.warning("dropped whole-scan test patients from %s: %s", root, ", ".join(sorted(excluded)))
    if rows_without_files:
        logger.warning("%d row(s) of %s without image/mask files, e.g. %s", len(rows_without_files),
                       root / CSV_NAME, rows_without_files[0])
    if files_without_rows:
        logger.warning("%d file(s) in %s without a csv row, e.g. %s", len(files_without_rows), root,
                       files_without_rows[0])
    logger.info("listed %d nodules of %d patients in %s", len(cases), len({c.patient_id for c in cases}),
                root)
    return VOIListing(cases, rows_without_files, files_without_rows, sorted(excluded))


class LIDCVOIDataset(Sequence[VOISample]):
    """The labelled nodules of a case list under one label rule, loaded on access.

    Cases the rule excludes (label ``None``) are left out. Each item is a :class:`VOISample`
    whose image and mask are the only model inputs (see the module docstring). The class
    satisfies the map-style dataset protocol of ``torch.utils.data`` without importing torch.

    Args:
        cases: e.g. ``cases_for_split(list_vois(root).cases, load_split(), "train")``.
        rule: one of :data:`LABEL_RULES`.
    """

    def __init__(self, cases: Iterable[VOICase], rule: str = "ge2_readers_gt3") -> None:
        if rule not in LABEL_RULES:
            raise ValueError(f"unknown label rule {rule!r}; choose one of {', '.join(LABEL_RULES)}")
        self.rule = rule
        self.cases = [c for c in cases if c.label(rule) is not None]

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> VOISample:  # type: ignore[override]  # Dataset[T].__getitem__ is typed for the base class; this one returns a VOISample
        return self.cases[index].load(self.rule)

    def __iter__(self) -> Iterator[VOISample]:
        return (case.load(self.rule) for case in self.cases)

    @property
    def labels(self) -> list[int]:
        """The labels in item order, without reading any file (for class weights, stratification)."""
        return [int(c.label(self.rule)) for c in self.cases]  # type: ignore[arg-type]  # only labelled cases are listed (the rule's None cases were filtered out)
