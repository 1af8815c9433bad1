"""Finding and reading the CT series in a DICOM folder or zip."""

from __future__ import annotations

import logging
import os
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from lungai.errors import NotCTError, UnreadableInputError

logger = logging.getLogger(__name__)

_HEADER_TAGS = [
    "SeriesInstanceUID", "Modality", "ImagePositionPatient", "ImageOrientationPatient",
    "InstanceNumber", "PatientID", "SeriesDescription", "SeriesNumber", "Rows", "Columns",
]


@dataclass
class DicomSeries:
    """One series found in a folder: its files and the header fields LungAI needs.

    ``uid`` is the SeriesInstanceUID, or a stand-in key when de-identification blanked it
    (then ``has_uid`` is false).
    """

    uid: str
    modality: str
    has_uid: bool = True
    description: str = ""
    patient_id: str | None = None
    files: list[Path] = field(default_factory=list)
    positions: list[float] = field(default_factory=list)
    rows: int = 0
    columns: int = 0

    @property
    def num_slices(self) -> int:
        """Number of files (slices) in the series."""
        return len(self.files)


def _slice_position(ds: pydicom.Dataset) -> float:
    """Position of a slice along its normal (falls back to InstanceNumber)."""
    orientation = getattr(ds, "ImageOrientationPatient", None)
    position = getattr(ds, "ImagePositionPatient", None)
    if orientation is not None and position is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float)))
    return float(getattr(ds, "InstanceNumber", 0) or 0)


def _series_key(ds: pydicom.Dataset) -> str:
    """SeriesInstanceUID, or a stand-in for de-identified files that blanked it."""
    uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
    if uid:
        return uid
    return f"no-uid-series-{getattr(ds, 'SeriesNumber', '') or 0}-{getattr(ds, 'SeriesDescription', '') or 'unnamed'}"


def scan_folder(folder: Path) -> dict[str, DicomSeries]:
    """Read the headers of every DICOM file under ``folder`` (recursively), grouped by series.

    Files that are not DICOM are skipped.
    """
    series: dict[str, DicomSeries] = {}
    positions: dict[str, list[tuple[float, Path]]] = defaultdict(list)
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = Path(root) / name
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
                continue
            if not hasattr(ds, "Modality") and not hasattr(ds, "SeriesInstanceUID"):
                continue
            uid = _series_key(ds)
            if uid not in series:
                series[uid] = DicomSeries(
                    uid=uid,
                    has_uid=bool(getattr(ds, "SeriesInstanceUID", "")),
                    modality=str(getattr(ds, "Modality", "") or ""),
                    description=str(getattr(ds, "SeriesDescription", "") or ""),
                    patient_id=str(getattr(ds, "PatientID", "") or "") or None,
                    rows=int(getattr(ds, "Rows", 0) or 0),
                    columns=int(getattr(ds, "Columns", 0) or 0),
                )
            positions[uid].append((_slice_position(ds), path))
    for uid, entries in positions.items():
        entries.sort(key=lambda item: item[0])
        series[uid].files = [path for _, path in entries]
        series[uid].positions = [pos for pos, _ in entries]
    return series


def choose_series(found: dict[str, DicomSeries], source: Path, series_uid: str | None) -> DicomSeries:
    """Pick the requested series, or the CT series with the most slices.

    Raises:
        UnreadableInputError: no DICOM files, or the requested UID is absent.
        NotCTError: DICOM is present but no series is CT.
    """
    if not found:
        raise UnreadableInputError(f"no DICOM files found in {source}",
                                   "point to a folder or zip that holds the CT series' .dcm files")
    if series_uid is not None:
        if series_uid not in found:
            available = ", ".join(f"{s.uid} ({s.modality}, {s.num_slices} files)" for s in found.values())
            raise UnreadableInputError(f"series {series_uid} not found in {source}",
                                       f"available series: {available}")
        chosen = found[series_uid]
        if chosen.modality != "CT":
            raise NotCTError(f"series {series_uid} has modality {chosen.modality or 'unknown'}, not CT",
                             "choose a CT series with --series")
        return chosen
    ct_series = [s for s in found.values() if s.modality == "CT"]
    if not ct_series:
        modalities = ", ".join(sorted({s.modality or "unknown" for s in found.values()}))
        raise NotCTError(f"no CT series in {source} (found modality {modalities})",
                         "LungAI needs a chest CT series")
    chosen = max(ct_series, key=lambda s: s.num_slices)
    if len(found) > 1:
        logger.info("%d series in %s; using CT series %s (%d slices); choose another with --series",
                    len(found), source, chosen.uid, chosen.num_slices)
    return chosen


def read_series(series: DicomSeries) -> sitk.Image:
    """Read the pixels of a series (rescale slope/intercept applied by GDCM).

    Raises:
        UnreadableInputError: the pixel data cannot be decoded.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series.files])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise UnreadableInputError(f"cannot decode the pixel data of series {series.uid} ({first_line})",
                                   "check that the DICOM files are complete and not compressed with an unsupported codec") from exc


def read_headers(files: list[Path]) -> list[pydicom.Dataset]:
    """Read the full headers (no pixel data) of a series' files, in the order given.

    Derived objects such as a DICOM SEG reference the source instances and copy their
    patient, study and frame-of-reference attributes from these headers.

    Raises:
        UnreadableInputError: a file that was readable while scanning no longer is.
    """
    headers = []
    for path in files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise UnreadableInputError(f"cannot read the DICOM header of {path} ({exc})",
                                       "check that the DICOM files are complete") from exc
    return headers


def uneven_spacing_warning(series: DicomSeries, tolerance_mm: float = 0.1) -> str | None:
    """A warning when slices are missing or unevenly spaced, else ``None``."""
    if len(series.positions) < 3:
        return None
    gaps = np.diff(series.positions)
    if float(gaps.max() - gaps.min()) > tolerance_mm:
        return (f"slice spacing varies from {gaps.min():.2f} to {gaps.max():.2f} mm in series {series.uid}; "
                "slices may be missing, measurements along z are approximate")
    return None


def extract_zip(archive: Path, destination: Path) -> None:
    """Extract a zip of DICOM files, refusing entries that would land outside ``destination``.

    Raises:
        UnreadableInputError: the zip is corrupt or holds unsafe paths.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                parts = PurePosixPath(member.filename.replace("\\", "/")).parts
                if member.filename.startswith("/") or ".." in parts:
                    raise UnreadableInputError(f"unsafe path {member.filename!r} in {archive}",
                                               "re-create the zip with relative paths")
            zf.extractall(destination)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnreadableInputError(f"cannot read zip file {archive} ({exc})",
                                   "check the file is a complete, uncorrupted zip") from exc
