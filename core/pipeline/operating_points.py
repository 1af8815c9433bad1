"""The nodule detector's operating points: score thresholds and what they cost.

Torch-free, so the Slicer module can show them before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


# Chosen on 6 validation inserted-nodule scans (36 validation-split VOIs, seed 0) by
# `lungai train-detection --data-root ../shared/data --out runs/detection/convlstm_nodule --epochs 12
# --texture-weight 3 --calibration-scans 6` (operating_points.json there): the lowest threshold with
# at most 4, 1 and 0.25 false positives per scan (rounded down to 4 decimals; `high` reaches no more
# than 3.67). Valid for that checkpoint (weights/convlstm_nodule) only; see docs/results.md.
OPERATING_POINTS: dict[str, OperatingPoint] = {
    "high": OperatingPoint(threshold=0.7439, expected_fp_per_scan=3.67, sensitivity=0.69),
    "balanced": OperatingPoint(threshold=0.7617, expected_fp_per_scan=1.00, sensitivity=0.69),
    "specific": OperatingPoint(threshold=0.7984, expected_fp_per_scan=0.17, sensitivity=0.64),
}

# The same for the candidate strength alone (no classifier).
CANDIDATE_OPERATING_POINTS: dict[str, OperatingPoint] = {
    "high": OperatingPoint(threshold=0.6313, expected_fp_per_scan=4.00, sensitivity=0.53),
    "balanced": OperatingPoint(threshold=0.6657, expected_fp_per_scan=1.00, sensitivity=0.44),
    "specific": OperatingPoint(threshold=0.6913, expected_fp_per_scan=0.17, sensitivity=0.44),
}


#: What the detector is measured to miss (docs/results.md, "Detection" and "Masses"); every
#: findings.json with nodule detection carries these, so "none found" can be read correctly.
KNOWN_LIMITATIONS: tuple[str, ...] = (
    "ground-glass and part-solid nodules: the candidate filter ranks faint opacities behind vessels "
    "(3 of 22 validation subsolid nodules found at balanced; LIDC-IDRI-0002's 26 mm ground-glass "
    "nodule is missed at every operating point)",
    "nodules under 6 mm: 8 of 16 found at balanced on the inserted-nodule test scans",
    "masses (lesions over 30 mm) are found by a thickness rule checked on one labelled scan only",
)


#: Lung-RADS categories and malignancy estimates are given to lesions whose detection score passes
#: these operating points, and to masses. Below ``specific`` a detection is a false positive about
#: once per scan (``balanced``: 1.00 per validation scan; ``high``: 3.67), and a size-rule category
#: on it (a vessel confluence of 20 mm is "4B") alarms more than it informs; such lesions are
#: listed for review without a category or malignancy estimate.
CATEGORISED_POINTS: tuple[str, ...] = ("specific",)


def is_categorised(nodule: Any) -> bool:
    """Whether a finding gets a Lung-RADS category and a malignancy estimate (see :data:`CATEGORISED_POINTS`).

    Args:
        nodule: a :class:`lungai.io.findings.Nodule` (``detected_by`` and ``operating_point`` are read).
    """
    return nodule.detected_by == "mass" or nodule.operating_point in CATEGORISED_POINTS


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
