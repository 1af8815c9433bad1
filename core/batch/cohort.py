"""The cohort tables of a batch: ``cohort.csv``, ``cohort_nodules.csv``, ``cohort.html`` and ``batch.json``
(and ``cohort_follow_up.csv`` when cases have a prior).

Each is rewritten whole from the manifest's entries (through a temporary file and a rename, so
a reader never sees half a table) as cases finish and once more at the end.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lungai.batch.cohort_html import write_cohort_html
from lungai.followup.growth import LUNG_RADS_GROWTH_MM
from lungai.followup.outputs import CSV_COLUMNS as FOLLOW_UP_CSV_COLUMNS
from lungai.io.findings import NODULE_CSV_COLUMNS, Findings

#: One row per case in ``cohort.csv``.
COHORT_COLUMNS: tuple[str, ...] = (
    "case_id", "status", "exit_code", "error", "input", "series_uid",
    "lung_volume_right_ml", "lung_volume_left_ml", "lung_volume_total_ml", "laa_950_percent",
    "emphysema_probability", "nodule_count", "mass_count", "largest_nodule_mm", "highest_lung_rads",
    "highest_malignancy", "largest_mass_volume_mm3", "prior", "follow_up_matched", "follow_up_new",
    "follow_up_resolved", "follow_up_growing", "highest_follow_up_lung_rads", "seconds", "worker", "finished_utc",
)
#: ``cohort_nodules.csv``: the case id, then the columns of each case's ``nodules.csv``.
COHORT_NODULE_COLUMNS: tuple[str, ...] = ("case_id", *NODULE_CSV_COLUMNS)
#: ``cohort_follow_up.csv``: the case id, then the columns of each follow-up case's ``follow_up.csv``.
COHORT_FOLLOW_UP_COLUMNS: tuple[str, ...] = ("case_id", *FOLLOW_UP_CSV_COLUMNS)
#: Lung-RADS size-rule categories from lowest to highest.
LUNG_RADS_ORDER: tuple[str, ...] = ("1", "2", "3", "4A", "4B", "4X")


def summarize_findings(findings: Findings) -> dict[str, Any]:
    """A case's cohort numbers from its findings: lung volumes, LAA-950, nodules and masses."""
    lungs = findings.lungs
    emphysema = findings.emphysema
    total = emphysema.densitometry.get("total") if emphysema is not None else None
    nodules = [n for n in findings.nodules if n.kind != "mass"]
    masses = [n for n in findings.nodules if n.kind == "mass"]
    categories = [n.lung_rads.category for n in findings.nodules if n.lung_rads is not None]
    malignancy = [n.malignancy.probability for n in findings.nodules if n.malignancy is not None]
    volumes = {side: lung.volume_ml for side, lung in lungs.items() if lung is not None}
    return {
        "lung_volume_right_ml": _rounded(volumes.get("right")),
        "lung_volume_left_ml": _rounded(volumes.get("left")),
        "lung_volume_total_ml": _rounded(volumes.get("total")),
        "laa_950_percent": _rounded(None if total is None else total.laa_950_percent),
        "emphysema_probability": _rounded(None if emphysema is None else emphysema.model_probability, 3),
        "nodule_count": len(nodules) if "nodules" in findings.run.tasks else None,
        "mass_count": len(masses) if "nodules" in findings.run.tasks else None,
        "largest_nodule_mm": _rounded(max((n.long_axis_mm for n in nodules), default=None)),
        "highest_lung_rads": max(categories, key=_lung_rads_rank, default=None),
        "highest_malignancy": _rounded(max(malignancy, default=None), 3),
        "largest_mass_volume_mm3": _rounded(max((n.volume_mm3 for n in masses), default=None)),
    }


def summarize_follow_up(rows: list[dict[str, str]]) -> dict[str, Any]:
    """A follow-up case's cohort numbers from its ``follow_up.csv`` rows: nodules matched, new and
    resolved, matched ones whose mean diameter grew by more than the Lung-RADS 1.5 mm, and the
    highest Lung-RADS follow-up category."""
    statuses = [row["status"] for row in rows]
    grown = [row for row in rows if row["status"] == "matched" and row["mean_diameter_change_mm"]
             and float(row["mean_diameter_change_mm"]) > LUNG_RADS_GROWTH_MM]
    categories = [row["lung_rads_category"] for row in rows if row["lung_rads_category"]]
    return {"follow_up_matched": statuses.count("matched"), "follow_up_new": statuses.count("new"),
            "follow_up_resolved": statuses.count("resolved"), "follow_up_growing": len(grown),
            "highest_follow_up_lung_rads": max(categories, key=_lung_rads_rank, default=None)}


def _lung_rads_rank(category: str) -> int:
    return LUNG_RADS_ORDER.index(category) if category in LUNG_RADS_ORDER else -1


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def read_nodule_rows(nodules_csv: Path) -> list[dict[str, str]]:
    """The rows of a case's ``nodules.csv``."""
    with nodules_csv.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def write_cohort_tables(out_dir: Path, entries: Iterable[dict[str, Any]],
                        batch: dict[str, Any] | None = None) -> None:
    """Write ``cohort.csv``, ``cohort_nodules.csv``, ``cohort.html`` (and, with follow-up cases,
    ``cohort_follow_up.csv``) from the manifest entries, by case id.

    ``batch`` is the data of ``batch.json`` (plus ``skipped``) for the header of ``cohort.html``.
    """
    ordered = sorted(entries, key=lambda entry: entry["case_id"])
    rows = [_cohort_row(entry) for entry in ordered]
    _write_csv(out_dir / "cohort.csv", COHORT_COLUMNS, rows)
    nodule_rows = ({"case_id": entry["case_id"], **row} for entry in ordered if entry.get("status") == "done"
                   for row in entry.get("nodules", []))
    _write_csv(out_dir / "cohort_nodules.csv", COHORT_NODULE_COLUMNS, nodule_rows)
    follow_up = [{"case_id": entry["case_id"], **row} for entry in ordered if entry.get("status") == "done"
                 for row in entry.get("follow_up", [])]
    if follow_up or (out_dir / "cohort_follow_up.csv").exists():
        _write_csv(out_dir / "cohort_follow_up.csv", COHORT_FOLLOW_UP_COLUMNS, follow_up)
    write_cohort_html(out_dir / "cohort.html", rows, batch)


def _cohort_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = {column: entry.get(column) for column in COHORT_COLUMNS}
    row.update(entry.get("summary") or {})
    return row


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    os.replace(staging, path)


def write_batch_json(out_dir: Path, info: dict[str, Any]) -> None:
    """Write ``batch.json`` (settings, version, weights, counts, start and end) atomically."""
    path = out_dir / "batch.json"
    staging = path.with_name(".batch.json.tmp")
    staging.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(staging, path)
