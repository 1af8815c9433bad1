"""What cutting attached vessels off segmentations does to ``lungai run``'s lesions.

:func:`lungai.pipeline.nodules.segment_detections` drops a segmentation that is not plausible as a
lung lesion (mostly outside the search region, overgrown, tubular, branching). With
``DETACH_VESSELS`` it first opens the mask (:func:`lungai.preprocessing.lesion_region.detached`) and
keeps the body when that is plausible; a plausible segmentation whose body holds less than
``MIN_BODY_FRACTION`` of it (``--body-fraction``) is replaced by the body too. This runs ``lungai
run`` (lungs, nodules) on inserted-nodule scans (validation-split VOIs, or test-split ones with
``--split test``, pasted into the training backgrounds as ``lungai evaluate detection`` makes them;
seed 1 by default; with ``--pleural`` every nodule is placed against the lung boundary, as in the
evaluation's ``pleural_<split>`` scans) with and without it, the segmentations shared between the
two runs, and counts per variant the inserted nodules found (a lesion's centroid within max(5 mm,
the nodule's radius) of its centre) and the lesions that are none of them: the backgrounds' own
known lesions (a lesion centred on one, such as A0001's cancer;
:meth:`lungai.data.lesion_insertion.Background.known_lesions`) and the false positives (the rest).
Each lesion kept by the detaching is listed.

Usage::

    python benchmarks/detached_vessels.py [--data ../shared/data] [--split val] [--scans 20] [--seed 1] \\
        [--pleural] [--sensitivity balanced] [--body-fraction 0.5] [--out runs/detached_vessels.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import SimpleITK as sitk

import lungai
from lungai.evaluation.detection_eval import PLEURAL_SEED, inserted_cases
from lungai.pipeline import nodules

logger = logging.getLogger("detached_vessels")

REPO = Path(__file__).resolve().parents[1]


class _SharedSegmentations:
    """Memoises :func:`lungai.pipeline.nodules.segment_detection` by detection (one scan at a time),
    so the second variant's run reuses the first's segmentations."""

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}
        self._original = nodules.segment_detection
        nodules.segment_detection = self._segment  # type: ignore[assignment]  # benchmark-only instrumentation

    def _segment(self, model: Any, hu: Any, image: Any, detection: Any, *args: Any, **kwargs: Any) -> Any:
        key = (detection.source, detection.centre_lps_mm, detection.radius_mm)
        if key not in self.cache:
            self.cache[key] = self._original(model, hu, image, detection, *args, **kwargs)
        return self.cache[key]


def _score(lesions: list[tuple[float, float, float]], case: Any) -> dict[str, Any]:
    """Inserted nodules found (by size), the background's own lesions and the false positives."""
    truth = case.nodules
    hits = [[math.dist(c, t.center_mm) <= max(5.0, t.diameter_mm / 2) for t in truth] for c in lesions]
    own = [c for c, row in zip(lesions, hits) if not any(row) and case.ignores(c)]
    return {"found": [any(row[j] for row in hits) for j in range(len(truth))],
            "background_lesions": len(own), "false_positives": sum(not any(row) for row in hits) - len(own)}



def run_scan(case: Any, folder: Path, store: Any, shared: _SharedSegmentations, sensitivity: str,
             body_fraction: float) -> dict[str, Any]:
    """Both variants on one inserted scan."""
    path = folder / f"{case.scan_id}.nrrd"
    sitk.WriteImage(case.image, str(path), True)
    shared.cache.clear()
    row: dict[str, Any] = {"scan": case.scan_id, "nodules": [[list(t.center_mm), t.diameter_mm] for t in case.nodules],
                           "textures": list(case.textures)}
    shipped = nodules.MIN_BODY_FRACTION
    try:
        nodules.MIN_BODY_FRACTION = body_fraction
        for name, detach in (("with", True), ("without", False)):
            nodules.DETACH_VESSELS = detach
            result = lungai.run(path, folder / name / case.scan_id, tasks="lungs,nodules", models=store,
                                operating_point=sensitivity)
            centroids = [tuple(n.centroid.lps_mm) for n in result.findings.nodules]
            row[name] = {"lesions": [[*c, n.long_axis_mm] for c, n in zip(centroids, result.findings.nodules)],
                         **_score(centroids, case)}
    finally:
        nodules.DETACH_VESSELS, nodules.MIN_BODY_FRACTION = True, shipped
    return row


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for name in ("without", "with"):
        found = sum(sum(r[name]["found"]) for r in rows)
        total = sum(len(r["nodules"]) for r in rows)
        by_size = {}
        for label, low, high in (("< 6 mm", 0, 6), ("6-10 mm", 6, 10), (">= 10 mm", 10, 1e9)):
            hits = [f for r in rows for f, (_, d) in zip(r[name]["found"], r["nodules"]) if low <= d < high]
            by_size[label] = f"{sum(hits)}/{len(hits)}"
        fp = sum(r[name]["false_positives"] for r in rows) / max(len(rows), 1)
        own = sum(r[name]["background_lesions"] for r in rows) / max(len(rows), 1)
        lines.append(f"{name} detaching: {found}/{total} inserted nodules found, {fp:.2f} false positives and "
                     f"{own:.2f} of the background's own lesions per scan; "
                     + ", ".join(f"{k} {v}" for k, v in by_size.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pleural", action="store_true",
                        help="juxtapleural scans: every nodule against the lung boundary, seed + PLEURAL_SEED")
    parser.add_argument("--sensitivity", default="balanced", choices=("high", "balanced", "specific"))
    parser.add_argument("--body-fraction", type=float, default=nodules.MIN_BODY_FRACTION,
                        help="MIN_BODY_FRACTION of the run with detaching (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every scan's lesions and scores")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lungai").setLevel(logging.WARNING)
    logging.getLogger("lungai.pipeline.nodules").setLevel(logging.INFO)
    store = lungai.load_models(device="cpu")
    shared = _SharedSegmentations()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seed = args.seed + PLEURAL_SEED if args.pleural else args.seed
        for case in inserted_cases(args.data, args.split, args.scans, seed=seed,
                                   pleural_fraction=1.0 if args.pleural else 0.0):
            rows.append(run_scan(case, Path(tmp), store, shared, args.sensitivity, args.body_fraction))
            row = rows[-1]
            logger.info("%s: found %d / %d without detaching, %d with; false positives %d / %d", row["scan"],
                        sum(row["without"]["found"]), len(row["nodules"]), sum(row["with"]["found"]),
                        row["without"]["false_positives"], row["with"]["false_positives"])
    for line in _summary(rows):
        print(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
