"""LUNA16-style whole scans with world-coordinate nodule annotations.

Layout::

    <root>/**/<seriesuid>.mhd (+ .raw)     scans, at any depth (LUNA16 ships subset0..subset9/)
    <root>/annotations.csv                  seriesuid,coordX,coordY,coordZ,diameter_mm

``coordX/Y/Z`` are world millimetres in the MetaImage frame, which is LPS (ITK), so they are
used as LPS directly. A scan without annotation rows is a case without nodules (a negative).
Rows whose scan is missing are reported, not fatal. LUNA16 has no patient ids; the series UID
stands in for the patient, so split a LUNA16 set only where one patient has one series.

LUNA16 is built from LIDC-IDRI and contains the project's whole-scan test patients: their
series (:data:`lungai.data.holdout.WHOLE_SCAN_TEST_SERIES`) are dropped when listing.

Models see pixels only: the annotations are targets, never inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.data.csv_table import read_csv_rows
from lungai.data.holdout import is_held_out
from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.io.reader import read_scan
from lungai.io.volume import CTVolume

logger = logging.getLogger(__name__)

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")


@dataclass(frozen=True)
class WorldNodule:
    """A nodule annotation in world coordinates.

    Attributes:
        centre_lps: centre, LPS mm (x, y, z).
        diameter_mm: the annotated diameter.
    """

    centre_lps: tuple[float, float, float]
    diameter_mm: float

    def index_zyx(self, image: sitk.Image) -> tuple[float, float, float]:
        """The centre as a continuous (z, y, x) array index of ``image``."""
        x, y, z = image.TransformPhysicalPointToContinuousIndex(self.centre_lps)
        return z, y, x


@dataclass(frozen=True)
class Luna16Case:
    """One scan and its nodules; the scan is read only by :meth:`load`.

    Attributes:
        seriesuid: the scan's series UID (the file stem).
        image_path: the ``.mhd`` header.
        nodules: its annotations (empty for a scan without nodules).
    """

    seriesuid: str
    image_path: Path
    nodules: tuple[WorldNodule, ...]

    @property
    def patient_id(self) -> str:
        """The series UID: LUNA16 has no patient ids (see the module docstring)."""
        return self.seriesuid

    @property
    def case_id(self) -> str:
        """The series UID."""
        return self.seriesuid

    def load(self) -> CTVolume:
        """Read and validate the scan (int16 HU, LPS) with :func:`lungai.io.reader.read_scan`."""
        return read_scan(self.image_path)


@dataclass(frozen=True)
class Luna16Listing:
    """Scans joined to annotations.

    Attributes:
        cases: one per scan, sorted by series UID.
        rows_without_scans: series UIDs annotated in the csv without a ``.mhd`` file.
        excluded_test_series: whole-scan test series found and dropped.
    """

    cases: list[Luna16Case]
    rows_without_scans: list[str]
    excluded_test_series: list[str]


def read_annotations(csv_path: Path) -> dict[str, list[WorldNodule]]:
    """Read ``annotations.csv`` into series UID -> nodules.

    Raises:
        InputNotFoundError: the file does not exist.
        UnreadableInputError: a column is missing or a number does not parse.
    """
    if not csv_path.is_file():
        raise InputNotFoundError(f"LUNA16 annotations {csv_path} do not exist",
                                 "give the annotations.csv path")
    nodules: dict[str, list[WorldNodule]] = {}
    for line, row in read_csv_rows(csv_path, ANNOTATION_COLUMNS):
        try:
            nodule = WorldNodule((float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])),
                                 float(row["diameter_mm"]))
        except ValueError as exc:
            raise UnreadableInputError(f"{csv_path} line {line}: {exc}", "fix the number") from exc
        if not np.all(np.isfinite(nodule.centre_lps)) or not nodule.diameter_mm > 0:
            raise UnreadableInputError(f"{csv_path} line {line}: bad centre or diameter", "fix the row")
        nodules.setdefault(row["seriesuid"].strip(), []).append(nodule)
    return nodules


def list_luna16(root: str | Path, annotations: str | Path | None = None) -> Luna16Listing:
    """List LUNA16-style scans with their nodules, without reading any image.

    Args:
        root: folder searched recursively for ``<seriesuid>.mhd``.
        annotations: the annotation csv; default ``<root>/annotations.csv``.

    Returns:
        The cases and the annotation rows without scans.

    Raises:
        InputNotFoundError: ``root`` or the csv does not exist, or no ``.mhd`` is found.
        UnreadableInputError: the csv is malformed, or two scans share a series UID.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputNotFoundError(f"LUNA16 folder {root} does not exist", "check the path")
    by_series = read_annotations(Path(annotations) if annotations else root / "annotations.csv")
    scans: dict[str, Path] = {}
    for path in sorted(root.rglob("*.mhd")):
        if path.stem in scans:
            raise UnreadableInputError(f"two scans for series {path.stem}: {scans[path.stem]} and {path}",
                                       "remove the duplicate")
        scans[path.stem] = path
    if not scans:
        raise InputNotFoundError(f"no .mhd scans under {root}", "give the folder holding the LUNA16 subsets")
    excluded = sorted(uid for uid in scans if is_held_out(uid))
    if excluded:
        logger.warning("dropped %d whole-scan test series from %s", len(excluded), root)
    cases = [Luna16Case(uid, path, tuple(by_series.get(uid, ()))) for uid, path in sorted(scans.items())
             if uid not in excluded]
    orphans = sorted(uid for uid in by_series if uid not in scans)
    if orphans:
        logger.warning("%d annotated series without a scan under %s, e.g. %s", len(orphans), root, orphans[0])
    logger.info("listed %d scans with %d nodules in %s", len(cases), sum(len(c.nodules) for c in cases), root)
    return Luna16Listing(cases, orphans, excluded)
