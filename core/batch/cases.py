"""Find the cases of a batch: scan files, DICOM series and zips in folder trees, a CSV, globs.

Every case is one scan as ``lungai run`` would read it (a path, and for a DICOM series in a
tree its SeriesInstanceUID). Case ids are stable and safe as folder names: a DICOM series'
``<PatientID>_<StudyDate>_<SeriesNumber>`` (the name ``lungai run`` gives its outputs), else
the file name without its extension, or the CSV's ``case_id``. Two cases with one id are an
error naming both paths.
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lungai.errors import CaseListError, InputNotFoundError, LungAIError
from lungai.io import dicom
from lungai.io.reader import IMAGE_SUFFIXES, safe_name, scan_stem, series_name

logger = logging.getLogger(__name__)

#: Suffixes of single-file scans found in folder trees (``.dcm`` files are read as DICOM series).
SCAN_SUFFIXES: tuple[str, ...] = tuple(s for s in IMAGE_SUFFIXES if s != ".dcm")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Case:
    """One scan of a batch.

    Attributes:
        case_id: the case's name, safe as a folder name; its outputs go to ``OUT_DIR/<case_id>``.
        path: what ``lungai run`` is given: a scan file, a DICOM folder or a DICOM zip.
        series_uid: the DICOM series to read (``None``: as ``lungai run`` chooses).
        slices: the series' slice count when discovery read it (DICOM), else ``None``.
        files: the DICOM series' files, for the input fingerprint; empty for a single file or zip.
        prior: the patient's prior scan (or a LungAI output folder of it), from a CSV's ``prior``
            column: the case is then a follow-up (``lungai follow-up PRIOR PATH``).
        prior_date: the prior's date (ISO) when its file has none (CSV ``prior_date``).
        current_date: the scan's date (ISO) when its file has none (CSV ``current_date``).
    """

    case_id: str
    path: Path
    series_uid: str | None = None
    slices: int | None = None
    files: tuple[Path, ...] = ()
    prior: Path | None = None
    prior_date: str | None = None
    current_date: str | None = None


@dataclass
class Discovery:
    """What the inputs hold: the cases, and what was seen but not taken, with why."""

    cases: list[Case] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def discover(inputs: list[str], all_series: bool = False) -> Discovery:
    """The cases of ``inputs``: folders (searched recursively), CSV files, scan files, globs.

    Args:
        inputs: paths or glob patterns, in any mix.
        all_series: take every CT series of a DICOM study, not only the one with most slices.

    Raises:
        InputNotFoundError: an input that neither exists nor matches anything as a glob.
        CaseListError: two cases with the same id, a CSV without ``case_id,path``, no case at all.
    """
    found = Discovery()
    for text in inputs:
        for path in _expand(text):
            _add_input(path, all_series, found)
    _refuse_duplicates(found.cases)
    if not found.cases:
        raise CaseListError(f"no scans found in {' '.join(inputs)}",
                            f"give folders holding {', '.join(SCAN_SUFFIXES)} files, DICOM series or zips, "
                            "a CSV with case_id,path, or a glob")
    return found


def _expand(text: str) -> list[Path]:
    """An existing path as it is; otherwise the glob's matches, sorted."""
    path = Path(text)
    if path.exists() or not _GLOB_CHARS & set(text):
        if not path.exists():
            raise InputNotFoundError(f"input {text} does not exist", "check the path")
        return [path]
    matches = sorted(glob.glob(text, recursive=True))
    if not matches:
        raise InputNotFoundError(f"the pattern {text} matches nothing", "check the pattern (quote it for the shell)")
    return [Path(match) for match in matches]


def _add_input(path: Path, all_series: bool, found: Discovery) -> None:
    """Add the cases of one existing path."""
    if path.is_dir():
        _add_folder(path, all_series, found)
    elif path.suffix.lower() == ".csv":
        found.cases.extend(read_case_csv(path))
    elif path.suffix.lower() == ".zip":
        found.cases.append(_zip_case(path))
    else:
        found.cases.append(Case(case_id=safe_name(scan_stem(path)), path=path))


def _add_folder(folder: Path, all_series: bool, found: Discovery) -> None:
    """Scan files and zips under ``folder``, and its DICOM series (one per study, or all with ``all_series``)."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith("."):
                continue
            if name.lower().endswith(SCAN_SUFFIXES):
                found.cases.append(Case(case_id=safe_name(scan_stem(path)), path=path))
            elif name.lower().endswith(".zip"):
                found.cases.append(_zip_case(path))
    _add_dicom_series(folder, all_series, found)


def _zip_case(path: Path) -> Case:
    """A DICOM zip as one case, named from its chosen series' header when it can be read."""
    try:
        series = dicom.choose_series(dicom.scan_zip(path), path, None)
    except LungAIError as error:  # the run reports it as the case's failure
        logger.info("%s: %s", path, error.message)
        return Case(case_id=safe_name(scan_stem(path)), path=path)
    return Case(case_id=series_name(series, path), path=path, slices=series.num_slices)


def _add_dicom_series(folder: Path, all_series: bool, found: Discovery) -> None:
    """One case per DICOM study under ``folder`` (its CT series with most slices), or per CT series."""
    studies: dict[tuple[str | None, str], list[dicom.DicomSeries]] = defaultdict(list)
    for series in dicom.scan_folder(folder).values():
        if series.modality != "CT":
            found.skipped.append((_series_folder(series).as_posix(),
                                  f"series {series.uid}: modality {series.modality or 'unknown'}, not CT"))
            continue
        studies[(series.patient_id, series.study_uid)].append(series)
    for series_list in studies.values():
        ordered = sorted(series_list, key=lambda s: s.num_slices, reverse=True)
        chosen = ordered if all_series else ordered[:1]
        for series in chosen:
            source = _series_folder(series)
            found.cases.append(Case(case_id=series_name(series, source), path=source,
                                    series_uid=series.uid if series.has_uid else None,
                                    slices=series.num_slices, files=tuple(series.files)))
        for series in ordered[len(chosen):]:
            found.skipped.append((_series_folder(series).as_posix(), f"series {series.uid}: "
                                  f"{series.num_slices} slices, not the study's largest CT series (--all-series)"))


def _series_folder(series: dicom.DicomSeries) -> Path:
    """The deepest folder that holds all of a series' files."""
    return Path(os.path.commonpath([str(path.parent) for path in series.files]))


def read_case_csv(path: Path) -> list[Case]:
    """The cases of a CSV with columns ``case_id,path`` (optional ``series_uid``, and ``prior``,
    ``prior_date``, ``current_date`` for follow-up cases: a row with a ``prior`` is compared with it).

    Relative paths are taken from the CSV's folder; ids are made safe as folder names.

    Raises:
        CaseListError: the columns are missing, a row lacks an id or a path, or a date is not ISO.
    """
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = set(reader.fieldnames or ())
        if not {"case_id", "path"} <= columns:
            raise CaseListError(f"{path} has columns {', '.join(sorted(columns)) or '(none)'}, not case_id,path",
                                "give a CSV whose header is case_id,path (and optionally series_uid)")
        cases = []
        for number, row in enumerate(reader, start=2):
            case_id, scan = (row.get("case_id") or "").strip(), (row.get("path") or "").strip()
            if not case_id or not scan:
                raise CaseListError(f"{path} line {number} lacks a case_id or a path", "fill in both columns")
            prior = (row.get("prior") or "").strip()
            cases.append(Case(case_id=safe_name(case_id), path=path.parent / scan,
                              series_uid=(row.get("series_uid") or "").strip() or None,
                              prior=path.parent / prior if prior else None,
                              prior_date=_iso_date(row, "prior_date", path, number),
                              current_date=_iso_date(row, "current_date", path, number)))
    return cases


def _iso_date(row: dict[str, str | None], column: str, path: Path, number: int) -> str | None:
    """A CSV cell holding a date as ``YYYY-MM-DD`` (``None`` when empty).

    Raises:
        CaseListError: any other text.
    """
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise CaseListError(f"{path} line {number}: {column} {text!r} is not a date",
                            "write dates as YYYY-MM-DD") from None


def _refuse_duplicates(cases: list[Case]) -> None:
    """Two cases with one id would write one output folder.

    Raises:
        CaseListError: naming the id and both paths.
    """
    seen: dict[str, Case] = {}
    for case in cases:
        other = seen.setdefault(case.case_id, case)
        if other is not case:
            raise CaseListError(f"two cases have the id {case.case_id}: {other.path} and {case.path}",
                                "give the cases distinct names in a CSV with case_id,path, or rename one")
