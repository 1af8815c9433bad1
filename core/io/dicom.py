"""Finding and reading the CT series in a DICOM folder or zip."""

from __future__ import annotations

import logging
import os
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from lungai.errors import AmbiguousInputError, NotCTError, UnreadableInputError

logger = logging.getLogger(__name__)

_HEADER_TAGS = [
    "SeriesInstanceUID", "Modality", "ImagePositionPatient", "ImageOrientationPatient",
    "InstanceNumber", "PatientID", "SeriesDescription", "SeriesNumber", "Rows", "Columns",
    "StudyInstanceUID", "StudyDate", "ImageType",
]

#: Direction cosines that differ by more than this from the series' usual ones mark a slice of
#: another plane (a localizer stored in the axial series).
ORIENTATION_TOLERANCE = 0.01


@dataclass
class DicomSeries:
    """One series found in a folder: its files and the header fields LungAI needs.

    ``uid`` is the SeriesInstanceUID, or a stand-in key when de-identification blanked it
    (then ``has_uid`` is false). ``files`` are the series' slices in position order; localizer
    (scout) images stored in the series are not among them but counted in ``localizers``.
    """

    uid: str
    modality: str
    has_uid: bool = True
    description: str = ""
    patient_id: str | None = None
    study_uid: str = ""
    study_date: str = ""
    series_number: str = ""
    files: list[Path] = field(default_factory=list)
    positions: list[float] = field(default_factory=list)
    rows: int = 0
    columns: int = 0
    localizers: int = 0

    @property
    def num_slices(self) -> int:
        """Number of files (slices) in the series."""
        return len(self.files)


@dataclass(frozen=True)
class _Slice:
    """One file's place in its series."""

    path: Path
    position: float
    orientation: tuple[float, ...] | None
    localizer: bool


def _slice_position(ds: pydicom.Dataset) -> float:
    """Position of a slice along its normal (falls back to InstanceNumber)."""
    orientation = getattr(ds, "ImageOrientationPatient", None)
    position = getattr(ds, "ImagePositionPatient", None)
    if orientation is not None and position is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float)))
    return float(getattr(ds, "InstanceNumber", 0) or 0)


def _orientation(ds: pydicom.Dataset) -> tuple[float, ...] | None:
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if orientation is None or len(orientation) != 6:
        return None
    return tuple(float(value) for value in orientation)


def _is_localizer(ds: pydicom.Dataset) -> bool:
    """Whether ImageType names the image a localizer (scout, topogram)."""
    image_type = getattr(ds, "ImageType", None) or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(value).strip().upper() == "LOCALIZER" for value in values)


def _series_key(ds: pydicom.Dataset) -> str:
    """SeriesInstanceUID, or a stand-in for de-identified files that blanked it."""
    uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
    if uid:
        return uid
    return f"no-uid-series-{getattr(ds, 'SeriesNumber', '') or 0}-{getattr(ds, 'SeriesDescription', '') or 'unnamed'}"


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(getattr(ds, keyword, "") or "").strip()


def _new_series(uid: str, ds: pydicom.Dataset) -> DicomSeries:
    return DicomSeries(
        uid=uid, has_uid=bool(_text(ds, "SeriesInstanceUID")), modality=_text(ds, "Modality"),
        description=_text(ds, "SeriesDescription"), patient_id=_text(ds, "PatientID") or None,
        study_uid=_text(ds, "StudyInstanceUID"), study_date=_text(ds, "StudyDate"),
        series_number=_text(ds, "SeriesNumber"), rows=int(getattr(ds, "Rows", 0) or 0),
        columns=int(getattr(ds, "Columns", 0) or 0))


def _read_header(source: str | Path | IO[bytes]) -> pydicom.Dataset | None:
    """The header fields of one file (a path or an open binary file), ``None`` when it is not DICOM."""
    try:
        ds = pydicom.dcmread(source, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError):
        return None
    if not hasattr(ds, "Modality") and not hasattr(ds, "SeriesInstanceUID"):
        return None
    return ds


def _folder_headers(folder: Path) -> Iterator[tuple[Path, pydicom.Dataset]]:
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = Path(root) / name
            ds = _read_header(path)
            if ds is not None:
                yield path, ds


def _zip_headers(archive: Path) -> Iterator[tuple[Path, pydicom.Dataset]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if member.is_dir():
                    continue
                with zf.open(member) as stream:
                    ds = _read_header(stream)
                if ds is not None:
                    yield Path(member.filename), ds
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnreadableInputError(f"cannot read zip file {archive} ({exc})",
                                   "check the file is a complete, uncorrupted zip") from exc


def group_series(headers: Iterable[tuple[Path, pydicom.Dataset]]) -> dict[str, DicomSeries]:
    """Group DICOM headers by series, slices in position order, localizer images set aside.

    A localizer (scout) stored in the same series as the axial slices is left out of its files:
    an image whose ImageType holds ``LOCALIZER``, or whose orientation differs from the one most
    of the series' images share. A series made only of such images keeps them.
    """
    series: dict[str, DicomSeries] = {}
    slices: dict[str, list[_Slice]] = defaultdict(list)
    for path, ds in headers:
        uid = _series_key(ds)
        if uid not in series:
            series[uid] = _new_series(uid, ds)
        slices[uid].append(_Slice(path, _slice_position(ds), _orientation(ds), _is_localizer(ds)))
    for uid, entries in slices.items():
        kept = _without_localizers(entries)
        kept.sort(key=lambda item: item.position)
        series[uid].files = [entry.path for entry in kept]
        series[uid].positions = [entry.position for entry in kept]
        series[uid].localizers = len(entries) - len(kept)
        if series[uid].localizers:
            logger.info("series %s: %d localizer image(s) left out (%s)", uid, series[uid].localizers,
                        ", ".join(entry.path.name for entry in entries if entry not in kept))
    return series


def _without_localizers(entries: list[_Slice]) -> list[_Slice]:
    """The series' images without localizers (see :func:`group_series`)."""
    images = [entry for entry in entries if not entry.localizer] or list(entries)
    orientations = Counter(tuple(round(v, 2) for v in entry.orientation) for entry in images
                           if entry.orientation is not None)
    if not orientations:
        return images
    usual = np.asarray(orientations.most_common(1)[0][0])
    kept = [entry for entry in images if entry.orientation is None
            or np.abs(np.asarray(entry.orientation) - usual).max() <= ORIENTATION_TOLERANCE]
    return kept or images


def scan_folder(folder: Path) -> dict[str, DicomSeries]:
    """Read the headers of every DICOM file under ``folder`` (recursively), grouped by series.

    Files that are not DICOM are skipped.
    """
    return group_series(_folder_headers(folder))


def scan_zip(archive: Path) -> dict[str, DicomSeries]:
    """Like :func:`scan_folder` for a zip, reading only the headers (nothing is extracted).

    The series' ``files`` are the members' paths inside the zip.

    Raises:
        UnreadableInputError: the zip is corrupt.
    """
    return group_series(_zip_headers(archive))


def choose_series(found: dict[str, DicomSeries], source: Path, series_uid: str | None) -> DicomSeries:
    """Pick the requested series, or the CT series with the most slices.

    Without ``series_uid`` the CT series must belong to one patient and one study: LungAI does
    not choose between patients.

    Raises:
        UnreadableInputError: no DICOM files, or the requested UID is absent.
        NotCTError: DICOM is present but no series is CT.
        AmbiguousInputError: no ``series_uid`` and the CT series belong to several patients or studies.
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
    _refuse_several_patients(ct_series, source)
    chosen = max(ct_series, key=lambda s: s.num_slices)
    if len(found) > 1:
        logger.info("%d series in %s; using CT series %s (%d slices); choose another with --series",
                    len(found), source, chosen.uid, chosen.num_slices)
    return chosen


def _refuse_several_patients(ct_series: list[DicomSeries], source: Path) -> None:
    """Raise :class:`AmbiguousInputError` when the CT series span several patients or studies."""
    groups: dict[tuple[str, str], list[DicomSeries]] = defaultdict(list)
    for series in ct_series:
        groups[(series.patient_id or "", series.study_uid)].append(series)
    if len(groups) < 2:
        return
    patients = {patient for patient, _study in groups}
    what = f"{len(patients)} patients" if len(patients) > 1 else f"{len(groups)} studies"
    listed = "; ".join(
        f"patient {patient or '(no ID)'}, study {study or '(no UID)'}"
        + (f" of {members[0].study_date}" if members[0].study_date else "") + ": "
        + ", ".join(f"series {s.uid} ({s.num_slices} slices)" for s in members)
        for (patient, study), members in groups.items())
    raise AmbiguousInputError(f"{source} holds CT series of {what}: {listed}",
                              "run one series at a time with --series UID, or give one folder per patient and study")


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
                                   "check that the DICOM files are complete and not compressed with an "
                                   "unsupported codec") from exc


def read_headers(files: list[Path]) -> list[pydicom.Dataset]:
    """Read the full headers (no pixel data) of a series' files, in the order given.

    Derived objects such as a DICOM SEG reference the source instances and copy their
    patient, study and frame-of-reference attributes from these headers.

    Raises:
        UnreadableInputError: a file that was readable while scanning no longer is.
    """
    headers: list[pydicom.Dataset] = []
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
