"""How many inserted validation nodules lie near the lung boundary, and how many of those are found.

The inserted-nodule scans of ``lungai evaluate detection`` paste VOIs at random lung sites, so
nodules touching the chest wall (juxtapleural) are rare among them. This remakes the 20 validation
scans (seed 1, as the evaluation makes them), measures each nodule's distance from its edge to the
lung boundary (lung mask distance at the centre minus the radius) and counts, per distance band,
the nodules whose best detection score in each evaluation's ``metrics.json`` reaches that
evaluation's ``balanced`` threshold.

Usage::

    python benchmarks/pleural_distance.py [--data ../shared/data] \\
        --evaluations runs/detection/eval_val [runs/detection/eval_val_single ...]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.evaluation.detection_eval import inserted_cases
from lungai.preprocessing.lung_mask import segment_lungs

REPO = Path(__file__).resolve().parents[1]
BANDS_MM = ((-np.inf, 2.0), (2.0, 5.0), (5.0, 10.0), (10.0, np.inf))


def edge_distances(data: Path, scans: int) -> dict[tuple[str, tuple[float, ...]], float]:
    """Per (scan, nodule centre), the distance (mm) from the nodule's edge to the lung boundary."""
    distances = {}
    for case in inserted_cases(data, "val", scans, seed=1):
        inside = sitk.Cast(segment_lungs(case.image).labels > 0, sitk.sitkUInt8)
        depth = sitk.SignedMaurerDistanceMap(inside, insideIsPositive=True, squaredDistance=False,
                                             useImageSpacing=True)
        for nodule in case.nodules:
            centre = depth.TransformPhysicalPointToIndex(nodule.center_mm)
            distances[(case.scan_id, tuple(np.round(nodule.center_mm, 3)))] = depth[centre] - nodule.diameter_mm / 2
    return distances


def found_by_band(distances: dict, evaluation: Path) -> list[tuple[int, int]]:
    """Per band of :data:`BANDS_MM`, (nodules, found at ``balanced``) for one evaluation folder."""
    metrics = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))["inserted_val"]
    threshold = metrics["operating_points"]["balanced"]["threshold"]
    scores = {(n["scan_id"], tuple(np.round(n["centre_lps_mm"], 3))): n["best_score"] for n in metrics["nodules"]}
    counts = []
    for low, high in BANDS_MM:
        keys = [k for k, d in distances.items() if low <= d < high]
        counts.append((len(keys), sum(1 for k in keys if (scores.get(k) or 0.0) >= threshold)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--evaluations", type=Path, nargs="+", default=[REPO / "runs" / "detection" / "eval_val"])
    parser.add_argument("--scans", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    distances = edge_distances(args.data, args.scans)
    print("| edge to lung boundary | nodules | " + " | ".join(f"found at balanced, {e}" for e in args.evaluations)
          + " |")
    print("|---|---|" + "---|" * len(args.evaluations))
    columns = [found_by_band(distances, e) for e in args.evaluations]
    for i, (low, high) in enumerate(BANDS_MM):
        print(f"| {low:g} to {high:g} mm | {columns[0][i][0]} | " + " | ".join(str(c[i][1]) for c in columns) + " |")


if __name__ == "__main__":
    main()
