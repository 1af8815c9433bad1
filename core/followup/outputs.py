"""The files of a follow-up: ``follow_up.json``, ``follow_up.csv``, the transform, the resampled prior,
the current segmentation with the matches in its segment names, and ``report.html``.

``follow_up.json`` is its own versioned schema (:data:`SCHEMA`, :data:`SCHEMA_VERSION`;
docs/outputs.md and docs/follow-up.md describe it). Readers check the major version; minor
versions only add fields. Every coordinate is LPS millimetres of the scan it is named after.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai import __version__, labels
from lungai.followup.engine import FollowUp, Lesion, Pair
from lungai.followup.registration import resample_prior
from lungai.io.reader import to_original_orientation
from lungai.io.segmentation import write_seg_nrrd

logger = logging.getLogger(__name__)

SCHEMA = "lungai-follow-up"
SCHEMA_VERSION = "1.1"
TRANSFORM_FILE = "registration.tfm"
CSV_COLUMNS = (
    "status", "current_nodule_id", "prior_nodule_id",
    "prior_finding_index", "prior_found_by", "prior_type",
    "prior_lps_x_mm", "prior_lps_y_mm", "prior_lps_z_mm",
    "prior_long_axis_mm", "prior_short_axis_mm", "prior_mean_diameter_mm", "prior_volume_mm3",
    "current_finding_index", "current_found_by", "current_type",
    "current_lps_x_mm", "current_lps_y_mm", "current_lps_z_mm",
    "current_long_axis_mm", "current_short_axis_mm", "current_mean_diameter_mm", "current_volume_mm3",
    "prior_in_current_lps_x_mm", "prior_in_current_lps_y_mm", "prior_in_current_lps_z_mm", "match_distance_mm",
    "interval_days", "mean_diameter_change_mm", "volume_change_mm3", "volume_change_pct", "vdt_days", "vdt_note",
    "solid_component_change_mm", "lung_rads_category", "lung_rads_rule", "fleischner_recommendation",
    "volume_method",
)


def _point(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [round(float(v), 2) for v in values]


def _cells(values: np.ndarray | None) -> list[Any]:
    """Three CSV cells of a point (empty when there is none)."""
    return [None] * 3 if values is None else [round(float(v), 2) for v in values]


def _side(lesion: Lesion | None) -> dict[str, Any] | None:
    if lesion is None:
        return None
    size = lesion.size
    return {"finding_index": lesion.finding_index, "nodule_id": lesion.nodule_id,
            "centre_lps_mm": _point(lesion.centre_lps_mm), "volume_mm3": round(size.volume_mm3, 1),
            "mean_diameter_mm": size.mean_diameter_mm, "long_axis_mm": size.long_axis_mm,
            "short_axis_mm": size.short_axis_mm, "found_by": lesion.found_by, "type": lesion.type,
            "kind": lesion.kind, "solid_component_mm": size.solid_component_mm, "location": lesion.location}


def segment_name(pair: Pair) -> str | None:
    """The current segment's name with its match: ``Nodule 2 (prior 1)``, ``Nodule 3 (new)``."""
    if pair.current is None:
        return None
    base = labels.nodule(pair.current.nodule_id, pair.current.kind).name
    if pair.prior is None:
        return f"{base} (new)"
    how = ", segmented at the mapped position" if "mapped_segmentation" in (pair.prior.found_by,
                                                                           pair.current.found_by) else ""
    return f"{base} (prior {pair.prior.nodule_id}{how})"


def _pair_dict(pair: Pair) -> dict[str, Any]:
    growth = None if pair.growth is None else dataclasses.asdict(pair.growth)
    return {"status": pair.status, "prior": _side(pair.prior), "current": _side(pair.current),
            "prior_centre_in_current_lps_mm": _point(pair.prior_in_current_mm), "match_distance_mm": pair.distance_mm,
            "segment": segment_name(pair), "growth": growth, "lung_rads": pair.lung_rads,
            "fleischner": pair.fleischner}


def _scan_block(result: FollowUp, role: str) -> dict[str, Any]:
    analysed = result.prior if role == "prior" else result.current
    date = result.dates[0 if role == "prior" else 1]
    return {"source": str(analysed.side.given), "scan": str(analysed.side.scan),
            "reused_output": analysed.side.folder is not None, "date": None if date is None else date.isoformat(),
            "findings": f"{role}/findings.json"}


def follow_up_document(result: FollowUp) -> dict[str, Any]:
    """The ``follow_up.json`` content."""
    registration = result.registration
    per_lung = {name: _lung_transform_file(name) for name in registration.per_lung}
    counts = {status: sum(p.status == status for p in result.pairs) for status in ("matched", "new", "resolved")}
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "lungai_version": __version__,
            "command": result.config.command,
            "prior": _scan_block(result, "prior"), "current": _scan_block(result, "current"),
            "interval_days": result.interval_days,
            "registration": {"method": registration.method, "lung_dice": registration.dice["overall"],
                             "lung_dice_left": registration.dice["left"], "lung_dice_right": registration.dice["right"],
                             "quality": registration.quality, "transform": TRANSFORM_FILE,
                             "per_lung_transforms": per_lung, "seconds": registration.seconds},
            "counts": counts, "nodules": [_pair_dict(pair) for pair in result.pairs],
            "warnings": list(result.warnings), "timings_s": dict(result.timings_s)}


def _lung_transform_file(lung: str) -> str:
    return f"registration_{lung}_lung.tfm"


def _csv_row(pair: Pair) -> list[Any]:
    def side(lesion: Lesion | None) -> list[Any]:
        if lesion is None:
            return [None] * 10
        s = lesion.size
        return [lesion.finding_index, lesion.found_by, lesion.type, *_cells(lesion.centre_lps_mm),
                s.long_axis_mm, s.short_axis_mm, s.mean_diameter_mm, s.volume_mm3]
    growth, lung_rads = pair.growth, pair.lung_rads
    row = [pair.status, None if pair.current is None else pair.current.nodule_id,
           None if pair.prior is None else pair.prior.nodule_id, *side(pair.prior), *side(pair.current),
           *_cells(pair.prior_in_current_mm), pair.distance_mm,
           None if growth is None else growth.interval_days,
           *([None] * 6 if growth is None else [growth.mean_diameter_change_mm, growth.volume_change_mm3,
                                                growth.volume_change_pct, growth.vdt_days, growth.vdt_note,
                                                growth.solid_component_change_mm]),
           None if lung_rads is None else lung_rads["category"], None if lung_rads is None else lung_rads["rule"],
           None if pair.fleischner is None else pair.fleischner["recommendation"],
           None if growth is None else growth.volume_method]
    return ["" if value is None else value for value in row]


def write_csv(result: FollowUp, path: Path) -> None:
    """``follow_up.csv``: one row per nodule pair (new and resolved nodules included), header always."""
    with Path(path).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_row(pair) for pair in result.pairs)


def write_current_segmentation(result: FollowUp, folder: Path) -> Path:
    """``<current name>.seg.nrrd``: lungs and the current lesions, named with their match."""
    current = result.current
    array = result.lesion_labels["current"]
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(current.volume.image)
    names = {pair.current.nodule_id: (pair.current.kind, segment_name(pair)) for pair in result.pairs
             if pair.current is not None}
    structures = labels.STRUCTURES + tuple(
        dataclasses.replace(labels.nodule(index, kind), name=name or labels.nodule(index, kind).name)
        for index, (kind, name) in sorted(names.items()))
    path = folder / f"{current_name(result)}.seg.nrrd"
    write_seg_nrrd(to_original_orientation(image, current.volume), structures, path)
    return path


def current_name(result: FollowUp) -> str:
    """The current scan's output name (its ``.seg.nrrd`` stem in ``current/``)."""
    found = sorted(result.current.folder.glob("*_labels.nii.gz"))
    return found[0].name[: -len("_labels.nii.gz")] if found else "current"


def write_outputs(result: FollowUp, folder: Path) -> None:
    """Every follow-up file into ``folder`` (the staging folder)."""
    from lungai.followup.report import write_report_html

    registration = result.registration
    sitk.WriteTransform(registration.transform, str(folder / TRANSFORM_FILE))
    for lung, transform in registration.per_lung.items():
        sitk.WriteTransform(transform, str(folder / _lung_transform_file(lung)))
    sitk.WriteImage(resample_prior(result.prior.volume.image, result.current.volume.image, registration),
                    str(folder / "prior_registered.nrrd"), useCompression=True)
    write_current_segmentation(result, folder)
    write_csv(result, folder / "follow_up.csv")
    document = follow_up_document(result)
    (folder / "follow_up.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    write_report_html(result, document, folder / "report.html")
    logger.info("follow-up outputs: %d matched, %d new, %d resolved", *document["counts"].values())
