"""Saving the reviewed report: what the panel shows, with the machine's findings beside it.

:func:`save_reviewed_report` writes, named after the outputs (e.g. ``scan_findings.json``, so the
reports of several scans can share a folder):

- ``<stem>_findings.json``: the reviewed findings (:meth:`lungai.slicer.review.Review.reviewed_findings`):
  the lesions reported at the operating point shown, edits included, ``detection`` at that operating
  point, and the ``review`` block;
- ``<stem>_findings_machine.json``: the run's own ``findings.json``, unchanged;
- ``<stem>_nodules.csv``, ``<stem>_report.html``, ``<stem>.seg.nrrd``: the reviewed lesions, written
  by the pipeline's writers, the report headed by a note that it was reviewed;
- ``<stem>.seg.dcm``: a DICOM SEG of the reviewed segments when the CT was loaded from DICOM,
  its series described as reviewed and edited segments marked SEMIAUTOMATIC.

The files are written into a hidden folder first and moved into place together, so a failure
leaves the folder as it was (files of an earlier save of the same scan are replaced).
"""

from __future__ import annotations

import dataclasses
import html
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pydicom
import SimpleITK as sitk

from lungai import labels
from lungai.io.dicom_seg import SERIES_DESCRIPTION, SegReferenceError, write_dicom_seg
from lungai.io.findings import (
    LESION_KINDS,
    DetectionInfo,
    utc_timestamp,
    write_findings_json,
    write_nodules_csv,
)
from lungai.io.report_html import write_report_html
from lungai.io.segmentation import write_seg_nrrd
from lungai.io.volume import CTVolume
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.slicer.mrml import LoadedResults
from lungai.slicer.results import OutputFiles
from lungai.slicer.review import Review, operating_point_name
from lungai.slicer.scene_images import label_image, scan_volume

logger = logging.getLogger(__name__)

#: Suffix of the machine's findings kept beside the reviewed ones.
MACHINE_FINDINGS_SUFFIX = "_findings_machine.json"
#: Series description of a reviewed DICOM SEG.
REVIEWED_SERIES_DESCRIPTION = f"{SERIES_DESCRIPTION}, reviewed"


def detection_shown(detection: DetectionInfo | None, min_detection_score: float) -> DetectionInfo | None:
    """The run's ``detection`` record moved to the operating point shown (``None`` if detection did not run)."""
    if detection is None:
        return None
    name = operating_point_name(min_detection_score)
    point = OPERATING_POINTS.get(name)
    return DetectionInfo(operating_point=name, threshold=round(min_detection_score, 4),
                         expected_sensitivity=None if point is None else point.sensitivity,
                         expected_fp_per_scan=None if point is None else point.expected_fp_per_scan,
                         known_limitations=list(detection.known_limitations))


def save_review(results: LoadedResults, destination: Path, dicom_folder: Path | None = None,
                series_uid: str | None = None, reviewed_utc: str | None = None) -> list[Path]:
    """Save what the panel shows (see :func:`save_reviewed_report`), taking the CT and segments from the scene.

    Args:
        results: the loaded results under review, with their volume.
        destination: an existing folder.
        dicom_folder: the folder of the volume's DICOM files, if loaded from DICOM (for the DICOM SEG).
        series_uid: the volume's SeriesInstanceUID.
        reviewed_utc: when the review was saved; default now.

    Returns:
        The paths written.

    Raises:
        ValueError: the results were loaded without their volume.
        NotADirectoryError, OSError: see :func:`save_reviewed_report`.
    """
    if results.volume is None:
        raise ValueError("the results were loaded without their CT volume, so the report cannot show it")
    review = results.review
    ct = scan_volume(results.volume, review.machine.input.source, dicom_folder, series_uid)
    structures = labels.STRUCTURES + tuple(labels.nodule(nodule_id, review.nodules[nodule_id].kind)
                                           for nodule_id in review.reported())
    labelled = label_image(results.segmentation, structures, ct.image)
    return save_reviewed_report(results.files, review, ct, labelled, destination, reviewed_utc)


def save_reviewed_report(files: OutputFiles, review: Review, ct: CTVolume, label_image: sitk.Image,
                         destination: Path, reviewed_utc: str | None = None) -> list[Path]:
    """Write the reviewed report files (see the module docstring) into ``destination``.

    Args:
        files: the run's output files (its ``findings.json`` is kept as the machine's findings).
        review: the review shown in the panel.
        ct: the analysed CT on LungAI's LPS grid; with ``dicom_headers`` when loaded from DICOM.
        label_image: the panel's segments on the grid of ``ct.image`` (lungs and reported lesions;
            see :func:`lungai.slicer.scene_images.label_image`).
        destination: an existing folder.
        reviewed_utc: when the review was saved; default now.

    Returns:
        The paths written.

    Raises:
        NotADirectoryError: ``destination`` is not an existing folder.
        OSError: a file cannot be written.
    """
    destination = Path(destination)
    if not destination.is_dir():
        raise NotADirectoryError(f"{destination} is not a folder")
    stem, machine_name = files.stem, f"{files.stem}{MACHINE_FINDINGS_SUFFIX}"
    reviewed_utc = reviewed_utc or utc_timestamp()
    record = review.record(reviewed_utc, machine_name)
    findings = review.reviewed_findings(reviewed_utc, machine_name)
    findings = dataclasses.replace(findings, detection=detection_shown(findings.detection, review.min_detection_score))
    structures = labels.STRUCTURES + tuple(labels.nodule(nodule.id, nodule.kind) for nodule in findings.nodules)
    staging = Path(tempfile.mkdtemp(prefix=".lungai-review-", dir=destination))
    try:
        if ct.dicom_headers:
            problem = _write_reviewed_seg(label_image, ct, structures, review.edited, staging / f"{stem}.seg.dcm")
            if problem is not None:
                findings = dataclasses.replace(findings, warnings=[*findings.warnings, problem])
        shutil.copyfile(files.findings, staging / machine_name)
        write_findings_json(findings, staging / f"{stem}_findings.json")
        write_nodules_csv(findings.nodules, staging / f"{stem}_nodules.csv")
        write_seg_nrrd(label_image, structures, staging / f"{stem}.seg.nrrd")
        write_report_html(findings, ct, label_image, staging / f"{stem}_report.html")
        _add_review_note(staging / f"{stem}_report.html", review, record)
        written = []
        for path in sorted(staging.iterdir()):
            os.replace(path, destination / path.name)
            written.append(destination / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved the reviewed report of %s to %s (%d lesions)", stem, destination, len(findings.nodules))
    return written


def _write_reviewed_seg(label_image: sitk.Image, ct: CTVolume, structures: tuple[labels.Structure, ...],
                        edited: set[int], path: Path) -> str | None:
    """Write the DICOM SEG of the reviewed segments; the warning for the findings when the series cannot be
    referenced."""
    try:
        write_dicom_seg(label_image, ct, structures, path)
    except SegReferenceError as error:
        message = f"no DICOM SEG written: {error}"
        logger.warning(message)
        return message
    seg = pydicom.dcmread(path)
    seg.SeriesDescription = REVIEWED_SERIES_DESCRIPTION
    edited_labels = {labels.nodule(nodule_id, kind).name for nodule_id in edited for kind in LESION_KINDS}
    for segment in seg.SegmentSequence:
        if segment.SegmentLabel in edited_labels:
            segment.SegmentAlgorithmType = "SEMIAUTOMATIC"
    seg.save_as(path, enforce_file_format=True)
    return None


def _add_review_note(report: Path, review: Review, record: dict[str, Any]) -> None:
    """Put a note at the top of the report: reviewed when, at which operating point, with which decisions."""
    point = record["operating_point"]
    decided = [f"{review.nodules[item['id']].kind.capitalize()} {item['id']}: {item['status']}"
               + (", edited and re-measured" if item["edited"] else "")
               for item in record["nodules"] if item["status"] in ("accepted", "rejected") or item["edited"]]
    items = "".join(f"<li>{html.escape(text)}</li>" for text in decided)
    note = (f"<section id=\"review\" class=\"disclaimer\"><p>Reviewed in 3D Slicer, saved "
            f"{html.escape(record['reviewed_utc'])}, at the {html.escape(point['name'])} operating point "
            f"(detection score {point['threshold']:.4f} or more; masses at every operating point). "
            f"{html.escape(review.progress() or 'No decisions recorded')}.</p>"
            f"{'<ul>' + items + '</ul>' if items else ''}"
            f"<p>Rejected lesions are left out. The machine's findings are in "
            f"{html.escape(record['machine_findings'])}.</p></section>\n")
    text = report.read_text(encoding="utf-8")
    report.write_text(text.replace("<body>\n", "<body>\n" + note, 1), encoding="utf-8")
