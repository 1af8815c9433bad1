"""The two scans of a follow-up: read, checked against each other, analysed or reused.

Each side is a scan (anything ``lungai run`` reads) or a LungAI output folder of one:

1. A folder holding ``findings.json`` is an output folder. Its scan is the ``input.source`` the
   findings name (as written, else relative to the folder's parent). It is reused, not
   recomputed, when (a) the same minor version of LungAI wrote it (:func:`check_reusable`), (b) it
   ran the nodules task, (c) the fingerprints of the scan read now equal the ``provenance.inputs``
   it recorded, and (d) its label map is on the scan's grid; otherwise
   :class:`~lungai.errors.PriorOutputMismatchError`.
2. The scan date is the DICOM StudyDate, else AcquisitionDate, else SeriesDate
   (:func:`scan_date`); other formats have none (the CLI's ``--prior-date``/``--current-date``).
3. Acquisition differences that bias the comparison (slice thickness, reconstruction kernel,
   contrast) become warnings (:func:`acquisition_warnings`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai import __version__
from lungai.errors import PriorOutputMismatchError
from lungai.io.findings import Findings, findings_from_dict, load_findings
from lungai.io.provenance import input_fingerprints
from lungai.io.reader import CANONICAL_ORIENTATION, ReadOptions, read_scan
from lungai.io.volume import CTVolume
from lungai.preprocessing.densitometry import Acquisition, describe_acquisition, is_sharp_kernel

logger = logging.getLogger(__name__)

#: Slice thicknesses that differ by more than this (mm) bias volumes and small-nodule diameters.
THICKNESS_DIFFERENCE_MM = 1.0
_DATE_KEYWORDS = ("StudyDate", "AcquisitionDate", "SeriesDate")


@dataclass
class Side:
    """One side of the comparison as given on the command line.

    Attributes:
        role: ``prior`` or ``current``.
        given: the path given.
        scan: the scan's path.
        findings_path: ``findings.json`` of a LungAI output folder given as input, else ``None``.
    """

    role: str
    given: Path
    scan: Path
    findings_path: Path | None = None

    @property
    def folder(self) -> Path | None:
        """The output folder given as input, if any."""
        return None if self.findings_path is None else self.findings_path.parent


@dataclass
class Analysed:
    """One analysed scan.

    Attributes:
        side: how it was given.
        volume: the CT.
        findings: its findings.
        labels: its label map on the CT grid (LPS): lungs, lesion ``i`` as ``10 + i``.
        folder: its LungAI output folder (inside the follow-up's output).
    """

    side: Side
    volume: CTVolume
    findings: Findings
    labels: sitk.Image
    folder: Path

    @property
    def lung_labels(self) -> sitk.Image:
        """The lung labels only (lesions removed)."""
        return sitk.Mask(self.labels, self.labels < 10)


def resolve(path: Path, role: str) -> Side:
    """Where the scan of a side is (see the module docstring, step 1).

    Raises:
        PriorOutputMismatchError: an output folder whose scan is not found.
        UnreadableInputError: an unreadable ``findings.json``.
    """
    path = Path(path)
    findings_path = path / "findings.json"
    if not (path.is_dir() and findings_path.is_file()):
        return Side(role, path, path)
    source = Path(load_findings(findings_path)["input"]["source"])
    for candidate in (source, path.parent / source):
        if candidate.exists():
            return Side(role, path, candidate, findings_path)
    raise PriorOutputMismatchError(f"the {role} output folder {path} names its scan {source}, which is not found",
                                   "give the scan itself, or run from the folder the analysis was made in")


def read_side(side: Side, force: bool) -> CTVolume:
    """Read the scan of a side (the DICOM series an output folder recorded)."""
    series = None
    if side.findings_path is not None:
        series = load_findings(side.findings_path)["input"].get("series_uid")
    return read_scan(side.scan, ReadOptions(series_uid=series, force=force))


def check_reusable(side: Side, volume: CTVolume) -> Findings:
    """The findings of an output folder given as input, once it is known to fit its scan (step 1).

    Raises:
        PriorOutputMismatchError: another LungAI version, no nodules task, other fingerprints.
    """
    assert side.findings_path is not None
    data = load_findings(side.findings_path)
    where = f"the {side.role} output folder {side.folder}"
    fix = f"give the scan ({side.scan}) instead, and LungAI analyses it again"
    version = str(data.get("run", {}).get("lungai_version", "unknown"))
    if version.split(".")[:2] != __version__.split(".")[:2]:
        raise PriorOutputMismatchError(f"{where} was made by LungAI {version}, this is {__version__}", fix)
    if "nodules" not in data.get("run", {}).get("tasks", []):
        raise PriorOutputMismatchError(f"{where} was made without the nodules task", fix)
    recorded = [_fingerprint(item) for item in (data.get("provenance") or {}).get("inputs", [])]
    now = [_fingerprint(vars(item)) for item in input_fingerprints(volume, side.scan)]
    if not recorded or recorded != now:
        raise PriorOutputMismatchError(f"{where} does not match {side.scan}: its recorded input fingerprints "
                                       "differ from the scan's", fix)
    return findings_from_dict(data)


def _fingerprint(item: dict) -> tuple:
    return (item.get("sha256"), item.get("size_bytes"), item.get("files"), item.get("mtime_utc"))


def load_labels(folder: Path, volume: CTVolume, role: str) -> sitk.Image:
    """The label map of a LungAI output folder, in LPS on the scan's grid.

    Raises:
        PriorOutputMismatchError: no single label map, or one on another grid.
    """
    found = sorted(folder.glob("*_labels.nii.gz"))
    if len(found) != 1:
        raise PriorOutputMismatchError(f"the {role} output folder {folder} holds {len(found)} label maps "
                                       "(*_labels.nii.gz), not one", "give the scan instead")
    image = sitk.ReadImage(str(found[0]))
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) != CANONICAL_ORIENTATION:
        image = sitk.DICOMOrient(image, CANONICAL_ORIENTATION)
    if image.GetSize() != volume.image.GetSize() or not np.allclose(image.GetOrigin(), volume.image.GetOrigin(),
                                                                    atol=1e-2):
        raise PriorOutputMismatchError(f"the label map {found[0]} is not on the grid of {volume.source}",
                                       "give the scan instead")
    image.CopyInformation(volume.image)
    return sitk.Cast(image, sitk.sitkUInt8)


def scan_date(volume: CTVolume) -> dt.date | None:
    """The scan's date from its DICOM header (StudyDate, AcquisitionDate, SeriesDate), or ``None``."""
    for header in volume.dicom_headers[:1]:
        for keyword in _DATE_KEYWORDS:
            text = str(header.get(keyword, "") or "").strip()
            try:
                return dt.datetime.strptime(text[:8], "%Y%m%d").date()
            except ValueError:
                continue
    return None


def patient_id(volume: CTVolume) -> str | None:
    """The DICOM PatientID of a scan, or ``None`` (other formats, blank)."""
    for header in volume.dicom_headers[:1]:
        value = str(header.get("PatientID", "") or "").strip()
        return value or None
    return None


def acquisition_warnings(prior: CTVolume, current: CTVolume) -> list[str]:
    """Differences in slice thickness, kernel and contrast that bias a size comparison."""
    before, now = describe_acquisition(prior), describe_acquisition(current)
    warnings = []
    if abs(before.slice_thickness_mm - now.slice_thickness_mm) > THICKNESS_DIFFERENCE_MM:
        warnings.append(f"slice thickness differs (prior {before.slice_thickness_mm:.2f} mm, current "
                        f"{now.slice_thickness_mm:.2f} mm): volumes and small-nodule sizes are biased; compare "
                        "with care")
    kernels = (_kernel_class(before), _kernel_class(now))
    if None not in kernels and kernels[0] != kernels[1]:
        warnings.append(f"reconstruction kernel differs (prior {before.kernel}, current {now.kernel}): sharp kernels "
                        "change measured size and attenuation")
    if (before.contrast_agent is None) != (now.contrast_agent is None) and (before.has_dicom_header
                                                                          and now.has_dicom_header):
        warnings.append(f"contrast differs (prior {before.contrast_agent or 'none'}, current "
                        f"{now.contrast_agent or 'none'}): attenuation and the solid component are not comparable")
    return warnings


def _kernel_class(acquisition: Acquisition) -> str | None:
    if acquisition.kernel is None:
        return None
    return "sharp" if is_sharp_kernel(acquisition.kernel) else "smooth"
