"""Detection-level FROC analysis and the CPM score, following the LUNA16 protocol.

LUNA16's rules, as implemented here:

* a detection hits a reference nodule when its centre lies within the nodule's radius
  (distance <= diameter / 2) of the nodule's centre, in the same scan;
* a nodule hit by several detections counts once, with the highest score among them;
  the other detections that hit it are neither true nor false positives;
* a detection that hits no nodule but lies within an *excluded* finding (LUNA16's irrelevant
  findings: nodules under 3 mm, non-nodules, nodules seen by too few readers) is ignored;
* every other detection is a false positive; false positives are counted per scan over all
  scans evaluated, including those without detections or nodules;
* the CPM (competition performance metric) is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2,
  4 and 8 false positives per scan, read from the FROC curve by linear interpolation between
  its operating points (the curve starts at 0 false positives and 0 sensitivity, and stays
  at its last sensitivity beyond its last operating point).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CPM_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class ScanDetection:
    """A detected nodule candidate and the scan it was found in.

    Attributes:
        scan_id: the scan it was found in.
        center_mm: its centre in world millimetres (any fixed axis order, same as the references').
        score: the detector's confidence; higher is more likely a nodule.
    """

    scan_id: str
    center_mm: tuple[float, float, float]
    score: float


@dataclass(frozen=True)
class Finding:
    """A reference finding: a nodule to detect or an excluded finding.

    Attributes:
        scan_id: the scan it is in.
        center_mm: its centre in world millimetres.
        diameter_mm: its diameter; the hit radius is half of it.
    """

    scan_id: str
    center_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass(frozen=True)
class FROCResult:
    """A FROC curve and the CPM read from it.

    Attributes:
        fps_per_scan: false positives per scan at each operating point, non-decreasing.
        sensitivity: fraction of nodules detected at each operating point.
        thresholds: a detection counts when its score >= the threshold; the first is +inf.
        fp_rates: the false-positive rates the CPM averages over.
        sensitivities_at_rates: the interpolated sensitivity at each of ``fp_rates``.
        cpm: the mean of ``sensitivities_at_rates``.
    """

    fps_per_scan: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    fp_rates: tuple[float, ...]
    sensitivities_at_rates: np.ndarray
    cpm: float


def _hits(detection: ScanDetection, findings: Sequence[Finding]) -> list[int]:
    point = np.asarray(detection.center_mm, dtype=float)
    return [
        index for index, finding in enumerate(findings)
        if np.linalg.norm(point - np.asarray(finding.center_mm, dtype=float)) <= finding.diameter_mm / 2
    ]


def match_detections(
    detections: Iterable[ScanDetection], nodules: Sequence[Finding], excluded: Sequence[Finding] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Apply LUNA16's hit rules.

    Args:
        detections: all detections of all scans.
        nodules: the reference nodules.
        excluded: findings whose detections are ignored.

    Returns:
        The best score of each nodule (``-inf`` when missed), in ``nodules`` order, and the
        scores of the false-positive detections.
    """
    nodules_by_scan: dict[str, list[int]] = defaultdict(list)
    for index, nodule in enumerate(nodules):
        nodules_by_scan[nodule.scan_id].append(index)
    excluded_by_scan: dict[str, list[Finding]] = defaultdict(list)
    for finding in excluded:
        excluded_by_scan[finding.scan_id].append(finding)

    best = np.full(len(nodules), -np.inf)
    false_positives: list[float] = []
    for detection in detections:
        scan_nodules = nodules_by_scan.get(detection.scan_id, [])
        hit = _hits(detection, [nodules[i] for i in scan_nodules])
        for local in hit:
            index = scan_nodules[local]
            best[index] = max(best[index], detection.score)
        if not hit and not _hits(detection, excluded_by_scan.get(detection.scan_id, [])):
            false_positives.append(detection.score)
    return best, np.asarray(false_positives, dtype=float)


def _count_at_least(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many ``scores`` are >= each threshold."""
    return scores.size - np.searchsorted(np.sort(scores), thresholds, side="left")


def sensitivity_at(fps_per_scan: np.ndarray, sensitivity: np.ndarray, rates: Sequence[float]) -> np.ndarray:
    """Read sensitivities off a FROC curve by linear interpolation between operating points.

    Args:
        fps_per_scan: non-decreasing false positives per scan of the operating points.
        sensitivity: their sensitivities (non-decreasing).
        rates: the false-positive rates to read at.

    Returns:
        One sensitivity per rate; rates beyond the last point get its sensitivity.
    """
    # Several points can share a false-positive rate; the best sensitivity there counts.
    unique_fps, last = np.unique(fps_per_scan[::-1], return_index=True)
    best = sensitivity[::-1][last]
    return np.interp(np.asarray(rates, dtype=float), unique_fps, best)


def froc(
    detections: Iterable[ScanDetection],
    nodules: Sequence[Finding],
    num_scans: int,
    excluded: Sequence[Finding] = (),
    fp_rates: Sequence[float] = CPM_FP_RATES,
) -> FROCResult:
    """FROC curve and CPM of a detector over a set of scans.

    Args:
        detections: all detections of all scans.
        nodules: the reference nodules to find.
        num_scans: how many scans were evaluated (false positives are per scan).
        excluded: findings whose detections are ignored (LUNA16's irrelevant findings).
        fp_rates: false-positive rates for the CPM; LUNA16's by default.

    Returns:
        The curve, the sensitivities at ``fp_rates`` and their mean.

    Raises:
        ValueError: if there are no nodules or ``num_scans`` is not positive.
    """
    if not nodules:
        raise ValueError("FROC needs at least one reference nodule")
    if num_scans <= 0:
        raise ValueError(f"num_scans must be positive, got {num_scans}")
    best, fp_scores = match_detections(detections, nodules, excluded)
    found = best[np.isfinite(best)]
    thresholds = np.unique(np.r_[found, fp_scores])[::-1]
    tp_counts = _count_at_least(found, thresholds)
    fp_counts = _count_at_least(fp_scores, thresholds)
    fps = np.r_[0.0, fp_counts / num_scans]
    sens = np.r_[0.0, tp_counts / len(nodules)]
    at_rates = sensitivity_at(fps, sens, fp_rates)
    return FROCResult(
        fps_per_scan=fps,
        sensitivity=sens,
        thresholds=np.r_[np.inf, thresholds],
        fp_rates=tuple(fp_rates),
        sensitivities_at_rates=at_rates,
        cpm=float(at_rates.mean()),
    )
