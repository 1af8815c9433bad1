"""Volume-level (weak) labels from a CSV: one scan, one label, e.g. emphysema present / absent.

The CSV has the columns ``path`` and ``label`` and, optionally, ``patient_id``::

    path,label,patient_id
    scans/a.nrrd,1,P001
    scans/b_dicom/,0,P002

``path`` is any scan :func:`lungai.io.reader.read_scan` reads (NRRD, NIfTI, MetaImage, a DICOM
folder or zip); a relative path is resolved against the CSV's folder. ``label`` is an integer
class. Without ``patient_id`` each volume counts as its own patient, so give patient ids when
a patient has several scans, or splits will leak. Rows of the project's whole-scan test
patients (:mod:`lungai.data.holdout`) are dropped. Models see pixels only: the label is the
target, never an input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lungai.data.csv_table import read_csv_rows
from lungai.data.holdout import is_held_out
from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.io.reader import read_scan
from lungai.io.volume import CTVolume

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "label")
PATIENT_COLUMN = "patient_id"
_SHOWN = 3


@dataclass(frozen=True)
class WeakLabelCase:
    """One labelled volume; the scan is read only by :meth:`load`.

    Attributes:
        case_id: the ``path`` as written in the CSV (unique per CSV).
        patient_id: the ``patient_id`` column, or the case id when the CSV has none.
        image_path: the resolved scan path.
        label: the integer class.
    """

    case_id: str
    patient_id: str
    image_path: Path
    label: int

    def load(self) -> CTVolume:
        """Read and validate the scan (int16 HU, LPS) with :func:`lungai.io.reader.read_scan`."""
        return read_scan(self.image_path)


def _label(text: str, csv_path: Path, line: int) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise UnreadableInputError(f"{csv_path} line {line}: label {text!r} is not an integer",
                                   "give integer classes (e.g. 0 / 1)") from exc


def read_weak_labels(csv_path: str | Path) -> list[WeakLabelCase]:
    """Read a weak-label CSV, checking columns, labels and that every scan exists.

    Args:
        csv_path: the CSV file.

    Returns:
        The cases in file order (whole-scan test patients dropped).

    Raises:
        InputNotFoundError: the CSV, or any scan it names, does not exist (all missing scans
            are counted, the first few named).
        UnreadableInputError: a required column is missing, a label is not an integer, a path
            is empty or listed twice.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputNotFoundError(f"weak-label CSV {csv_path} does not exist", "check the path")
    cases: list[WeakLabelCase] = []
    missing: list[str] = []
    dropped: set[str] = set()
    seen: set[str] = set()
    for line, row in read_csv_rows(csv_path, REQUIRED_COLUMNS):
        text = (row["path"] or "").strip()
        if not text:
            raise UnreadableInputError(f"{csv_path} line {line}: empty path",
                                       "give a scan path in every row")
        if text in seen:
            raise UnreadableInputError(f"{csv_path} line {line}: {text} is listed twice",
                                       "remove the duplicate")
        seen.add(text)
        label = _label(row["label"] or "", csv_path, line)
        patient = (row.get(PATIENT_COLUMN) or "").strip() or text
        if is_held_out(patient):
            dropped.add(patient)
            continue
        path = Path(text) if Path(text).is_absolute() else csv_path.parent / text
        if not path.exists():
            missing.append(text)
        cases.append(WeakLabelCase(case_id=text, patient_id=patient, image_path=path, label=label))
    if missing:
        raise InputNotFoundError(f"{len(missing)} scan(s) named in {csv_path} do not exist, e.g. "
                                 f"{', '.join(missing[:_SHOWN])}",
                                 "relative paths are resolved against the CSV's folder")
    if dropped:
        logger.warning("dropped whole-scan test patients from %s: %s", csv_path, ", ".join(sorted(dropped)))
    logger.info("read %d weak labels from %s", len(cases), csv_path)
    return cases
