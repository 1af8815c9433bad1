"""The nodule detector's operating points: score thresholds and what they cost.

The detector's points travel with its checkpoint (``config.json`` ``inference``
``operating_points``, written by ``lungai train detection``); the candidate-strength points
(no classifier) are fixed here. Torch-free, so the Slicer module can show them before anything
heavy is imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lungai.pipeline.config import DETECTOR_MODEL
from lungai.weights.manifest import packaged_dir


@dataclass(frozen=True)
class OperatingPoint:
    """A detection threshold and what it costs.

    Attributes:
        threshold: detections with a score at or above it are reported.
        expected_fp_per_scan: false positives per scan at this threshold on the validation scans.
        sensitivity: fraction of validation nodules found at this threshold.
    """

    threshold: float
    expected_fp_per_scan: float
    sensitivity: float


def points_from_inference(block: Mapping[str, Any]) -> dict[str, OperatingPoint]:
    """The operating points a detector checkpoint records in its ``config.json`` ``inference`` block
    (``operating_points``: name -> threshold, expected false positives per scan, sensitivity).

    Raises:
        ValueError: the block has no operating points, or one lacks a number.
    """
    table = block.get("operating_points")
    if not isinstance(table, Mapping) or not table:
        raise ValueError("the detector checkpoint records no operating points (its config.json inference block)")
    try:
        return {str(name): OperatingPoint(threshold=float(point["threshold"]),
                                          expected_fp_per_scan=float(point["expected_fp_per_scan"]),
                                          sensitivity=float(point["sensitivity"]))
                for name, point in table.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the detector checkpoint's operating points are incomplete ({exc})") from None


def checkpoint_operating_points(chosen: Mapping[str, Mapping[str, float]], data: str) -> dict[str, Any]:
    """The ``inference`` block that records a detector's operating points in its checkpoint.

    Args:
        chosen: per name, the validation ``threshold``, ``fp_per_scan`` and ``sensitivity``
            (``lungai train detection``'s calibration).
        data: what they were measured on.

    Returns:
        ``{"operating_points": ..., "operating_points_source": ...}``: thresholds rounded down to 4
        decimals (a detection at the chosen score still passes), the rates to 2.
    """
    points = {name: {"threshold": math.floor(float(p["threshold"]) * 1e4) / 1e4,
                     "expected_fp_per_scan": round(float(p["fp_per_scan"]), 2),
                     "sensitivity": round(float(p["sensitivity"]), 2)} for name, p in chosen.items()}
    return {"operating_points": points,
            "operating_points_source": f"{data}: the lowest score threshold with at most 4 / 1 / 0.25 false "
                                       "positives per scan, rounded down to 4 decimals"}


def bundled_operating_points() -> dict[str, OperatingPoint]:
    """The operating points of the detector checkpoint installed with LungAI (its ``config.json``).

    They were chosen on 6 validation inserted-nodule scans (36 validation-split VOIs, seed 0) by
    ``lungai train detection-ensemble --calibration-scans 6``, which writes them into the
    checkpoint: the lowest threshold with at most 4, 1 and 0.25 false positives per scan, the
    backgrounds' own lesions not counted as false positives; see docs/results.md, "Detection".
    """
    header = json.loads((packaged_dir() / DETECTOR_MODEL / "config.json").read_text(encoding="utf-8"))
    return points_from_inference(header.get("inference") or {})


#: The installed detector's operating points, read from its checkpoint (valid for it only).
OPERATING_POINTS: dict[str, OperatingPoint] = bundled_operating_points()

# The same for the candidate strength alone (no classifier), chosen by the same calibration
# (``operating_points.json`` ``candidates_only`` of ``lungai train detection-ensemble``).
CANDIDATE_OPERATING_POINTS: dict[str, OperatingPoint] = {
    "high": OperatingPoint(threshold=0.6235, expected_fp_per_scan=4.00, sensitivity=0.56),
    "balanced": OperatingPoint(threshold=0.6435, expected_fp_per_scan=1.00, sensitivity=0.50),
    "specific": OperatingPoint(threshold=0.6932, expected_fp_per_scan=0.00, sensitivity=0.44),
}


#: What the detector is measured to miss (docs/results.md, "Detection" and "Masses"); every
#: findings.json with nodule detection carries these, so "none found" can be read correctly.
KNOWN_LIMITATIONS: tuple[str, ...] = (
    "ground-glass and part-solid nodules: 5 of 22 validation subsolid nodules found at balanced "
    "(9 at high), 8 of the 22 not among the candidates of either pool",
    "nodules under 6 mm: 7 of 16 found at balanced on the inserted-nodule test scans",
    "nodules touching the chest wall, mediastinum or diaphragm (juxtapleural): 21 of 48 found by the detector at "
    "balanced on inserted test scans with every nodule against the lung boundary (36 of 48 elsewhere in the lungs), "
    "2 of the 12 under 6 mm",
    "masses (lesions over 30 mm) are found by a thickness rule checked on one labelled scan only",
)


#: Lung-RADS categories and malignancy estimates are given to lesions whose detection score passes
#: these operating points, and to masses. Below ``specific`` a detection is a false positive about
#: once per scan (``balanced``: 1.00 per calibration scan; ``high``: 4.00), and a size-rule category
#: on it (a vessel confluence of 20 mm is "4B") alarms more than it informs; such lesions are
#: listed for review without a category or malignancy estimate.
CATEGORISED_POINTS: tuple[str, ...] = ("specific",)


def is_categorised(nodule: Any) -> bool:
    """Whether a finding gets a Lung-RADS category and a malignancy estimate (see :data:`CATEGORISED_POINTS`).

    Args:
        nodule: a :class:`lungai.io.findings.Nodule` (``detected_by`` and ``operating_point`` are read).
    """
    return earns_category(nodule.detected_by, nodule.operating_point)


def earns_category(detected_by: str, operating_point: str | None) -> bool:
    """Whether a lesion found by ``detected_by`` (``blob``, ``ground_glass`` or ``mass``) whose score passed
    ``operating_point`` gets a Lung-RADS category and a malignancy estimate: a mass, or a score at
    :data:`CATEGORISED_POINTS`."""
    return detected_by == "mass" or operating_point in CATEGORISED_POINTS


def passed_operating_point(score: float | None, with_classifier: bool = True) -> str | None:
    """The strictest named operating point a detection score passes (``None``: none, or no score)."""
    if score is None:
        return None
    table = OPERATING_POINTS if with_classifier else CANDIDATE_OPERATING_POINTS
    passed = [(point.threshold, name) for name, point in table.items() if score >= point.threshold]
    return max(passed)[1] if passed else None


def operating_point(name: str, with_classifier: bool = True) -> OperatingPoint:
    """The operating point called ``name``.

    Raises:
        ValueError: for an unknown name.
    """
    table = OPERATING_POINTS if with_classifier else CANDIDATE_OPERATING_POINTS
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown operating point {name!r}; choose one of {', '.join(table)}") from None
