"""Fit the ground-glass scorer and choose its thresholds (training and validation data only).

Writes ``core/pipeline/ground_glass_scorer.json`` (:mod:`lungai.pipeline.ground_glass`):

1. **Training scans**: the training-split non-solid and part-solid VOIs (``nodules.csv``
   ``Texture`` 1-3, a selection variable only), each pasted twice (random flips and turns,
   ``--seed``), 6 per scan, alternately into the two training backgrounds. On each, the
   strongest ``--top`` ground-glass candidates with the ROI score of ``convlstm_nodule``'s first
   member (:func:`lungai.pipeline.detection.ground_glass_classifier`); a
   candidate within an inserted nodule's radius is a positive, one in a background's real
   tumour is left out, every other one is a negative.
2. **Fit**: L2 logistic regression (C = 1) on the standardised inputs of
   :data:`lungai.pipeline.ground_glass.INPUTS`.
3. **Thresholds**, on the 20 validation inserted-nodule scans of ``lungai evaluate detection``
   (seed 1, 6 validation-split VOIs per scan): per operating point, the lowest probability
   whose ground-glass detections add at most ``ADDED_FP`` false positives per scan to the
   blob detector's at that point (a ground-glass detection within its radius, at least 5 mm, of
   a reported blob detection is the same finding, not a false positive).

Each scan's candidates are cached in ``--cache`` (one ``.npz`` per scan). Prints the
validation table (subsolid / solid nodules found, false positives per scan) per operating point.

Usage::

    python benchmarks/ground_glass_pool.py [--data ../shared/data] [--cache runs/ground_glass] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lungai.data.detection_dataset import texture_group
from lungai.data.lesion_insertion import BACKGROUND_NAMES, augment_voi, load_background, place_nodules
from lungai.data.lidc_vois import list_vois
from lungai.data.splits import cases_for_split, load_split
from lungai.evaluation.detection_eval import inserted_cases
from lungai.models.checkpoint import load_model
from lungai.pipeline.detection import (
    SAME_LESION_MM,
    DetectionConfig,
    detect_nodules,
    ground_glass_classifier,
    roi_scores,
)
from lungai.pipeline.ground_glass import INPUTS, SCORER_FILE, GroundGlassScorer, feature_matrix
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.preprocessing.detection_rois import extract_rois
from lungai.preprocessing.ground_glass import GroundGlassConfig, find_ground_glass
from lungai.preprocessing.lung_mask import segment_lungs

logger = logging.getLogger("ground_glass_pool")

REPO = Path(__file__).resolve().parents[1]
SUBSOLID = ("non-solid", "part-solid")
ADDED_FP = {"high": 0.5, "balanced": 0.15, "specific": 0.05}
"""Per operating point, the false positives per validation scan the ground-glass pool may add."""
PER_SCAN = 6
TOP = 20


def _hits(points: np.ndarray, centres: list[Any], diameters: list[float]) -> np.ndarray:
    hit = np.full(len(points), -1)
    for k, (centre, diameter) in enumerate(zip(centres, diameters)):
        if len(points):
            near = np.linalg.norm(points - np.asarray(centre), axis=1) <= diameter / 2
            hit[near & (hit < 0)] = k
    return hit


def _record(image: Any, centres: list[Any], diameters: list[float], textures: list[str], model: torch.nn.Module,
            excluded: np.ndarray | None, top: int, with_blobs: bool) -> dict[str, np.ndarray]:
    """One scan's ground-glass candidates (inputs, hits) and, for validation, its blob detections."""
    lungs = segment_lungs(image).labels
    found = find_ground_glass(image, lungs, replace(GroundGlassConfig(), max_candidates=top))
    points = np.array([c.centre_lps_mm for c in found]).reshape(-1, 3)
    roi = (roi_scores(ground_glass_classifier(model), extract_rois(image, [c.centre_lps_mm for c in found]))
           if found else np.zeros(0))
    inside = np.zeros(len(found), bool)
    if excluded is not None:
        for i, p in enumerate(points):
            x, y, z = image.TransformPhysicalPointToIndex(tuple(p))
            inside[i] = excluded[z, y, x]
    record = {"inputs": feature_matrix(found, roi), "points": points,
              "radii": np.array([c.radius_mm for c in found]), "hit": _hits(points, centres, diameters),
              "excluded": inside, "textures": np.array(textures), "diameters": np.array(diameters)}
    if with_blobs:
        blobs = detect_nodules(image, lungs, DetectionConfig(threshold=0.0, ground_glass=False), classifier=model)
        b_points = np.array([b.centre_lps_mm for b in blobs]).reshape(-1, 3)
        record |= {"b_points": b_points, "b_scores": np.array([b.score for b in blobs]),
                   "b_hit": _hits(b_points, centres, diameters)}
    return record


def training_scans(data: Path, cache: Path, model: torch.nn.Module, seed: int,
                   fresh: bool) -> list[dict[str, np.ndarray]]:
    """Step 1: the training scans' candidates (cached)."""
    vois = [c for c in cases_for_split(list_vois(data / "lidc_vois").cases, load_split(), "train")
            if c.diameter_mm >= 3.0 and texture_group(c) in SUBSOLID]
    rng = np.random.default_rng([seed, 7])
    order = list(vois) * 2
    rng.shuffle(order)
    backgrounds = [load_background(n, data) for n in BACKGROUND_NAMES]
    scans = []
    for i in range(0, len(order), PER_SCAN):
        path = cache / f"train_{i // PER_SCAN:02d}.npz"
        chosen = order[i:i + PER_SCAN]
        background = backgrounds[(i // PER_SCAN) % len(backgrounds)]
        scan = place_nodules(background, [augment_voi(c.load(), rng) for c in chosen], rng)
        if fresh or not path.is_file():
            texture = {c.case_id: texture_group(c) for c in chosen}
            np.savez(path, **_record(scan.image, [n.centre_lps_mm for n in scan.nodules],
                                     [n.diameter_mm for n in scan.nodules], [texture[n.case_id] for n in scan.nodules],
                                     model, background.excluded, TOP, False))
            logger.info("%s: done", path.stem)
        scans.append(dict(np.load(path)))
    return scans


def validation_scans(data: Path, cache: Path, model: torch.nn.Module, fresh: bool) -> list[dict[str, np.ndarray]]:
    """The 20 validation inserted-nodule scans' candidates and blob detections (cached)."""
    paths = [cache / f"val_{i:02d}.npz" for i in range(20)]
    if fresh or not all(p.is_file() for p in paths):
        for path, case in zip(paths, inserted_cases(data, "val", 20, PER_SCAN, seed=1)):
            np.savez(path, **_record(case.image, [n.center_mm for n in case.nodules],
                                     [n.diameter_mm for n in case.nodules], case.textures, model, None, TOP, True))
            logger.info("%s: done", path.stem)
    return [dict(np.load(p)) for p in paths]


def fit(scans: list[dict[str, np.ndarray]]) -> tuple[StandardScaler, LogisticRegression, int, int]:
    """Step 2: the standardisation and the regression; also the positive and negative counts."""
    x = np.concatenate([s["inputs"][~s["excluded"]] for s in scans])
    y = np.concatenate([s["hit"][~s["excluded"]] >= 0 for s in scans])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x), y)
    return scaler, model, int(y.sum()), int((~y).sum())


def outcome(scans: list[dict[str, np.ndarray]], probabilities: list[np.ndarray], point: str,
            cut: float | None) -> dict[str, float]:
    """Nodules found by texture group and false positives per scan at ``point``, with the ground-glass
    detections of probability >= ``cut`` (``None``: blob detections only)."""
    threshold = OPERATING_POINTS[point].threshold
    fp_blob = fp_glass = 0
    found = {"subsolid": 0, "solid": 0}
    total = {"subsolid": 0, "solid": 0}
    for s, p in zip(scans, probabilities):
        shipped = s["b_scores"] >= threshold
        hits = set(s["b_hit"][shipped & (s["b_hit"] >= 0)].tolist())
        fp_blob += int(np.count_nonzero(shipped & (s["b_hit"] < 0)))
        reported = s["b_points"][shipped]
        for j in (np.flatnonzero(p >= cut) if cut is not None else []):
            if s["hit"][j] >= 0:
                hits.add(int(s["hit"][j]))
            elif not len(reported) or np.min(np.linalg.norm(reported - s["points"][j], axis=1)) > max(
                    s["radii"][j], SAME_LESION_MM):
                fp_glass += 1
        for k, texture in enumerate(s["textures"]):
            group = "solid" if texture == "solid" else "subsolid"
            total[group] += 1
            found[group] += k in hits
    n = len(scans)
    return {"fp_per_scan": (fp_blob + fp_glass) / n, "added_fp_per_scan": fp_glass / n,
            "subsolid_found": found["subsolid"], "subsolid": total["subsolid"],
            "solid_found": found["solid"], "solid": total["solid"]}


def choose_thresholds(scans: list[dict[str, np.ndarray]], probabilities: list[np.ndarray]) -> dict[str, float]:
    """Step 3: per operating point, the lowest probability within its added false-positive budget."""
    grid = np.round(np.arange(0.05, 0.991, 0.01), 2)
    chosen: dict[str, float] = {}
    floor = 0.0
    for point in ("high", "balanced", "specific"):
        ok = [t for t in grid if t > floor and outcome(scans, probabilities, point, t)["added_fp_per_scan"]
              <= ADDED_FP[point] + 1e-9]
        chosen[point] = float(ok[0])
        floor = chosen[point]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "ground_glass")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=SCORER_FILE)
    parser.add_argument("--fresh", action="store_true", help="recompute the cached candidates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    model = load_model(REPO / "weights" / "convlstm_nodule")
    train = training_scans(args.data, args.cache, model, args.seed, args.fresh)
    scaler, regression, positives, negatives = fit(train)
    scorer = GroundGlassScorer(top=TOP, mean=tuple(float(v) for v in scaler.mean_),
                               scale=tuple(float(v) for v in scaler.scale_),
                               coefficients=tuple(float(v) for v in regression.coef_[0]),
                               intercept=float(regression.intercept_[0]), thresholds={}, source="")
    val = validation_scans(args.data, args.cache, model, args.fresh)
    probabilities = [scorer.probabilities(s["inputs"]) for s in val]
    thresholds = choose_thresholds(val, probabilities)
    results = {p: {"blob_only": outcome(val, probabilities, p, None), "with_ground_glass":
                   outcome(val, probabilities, p, thresholds[p])} for p in thresholds}
    source = (f"fitted on {len(train)} training inserted-nodule scans (training-split non-solid and part-solid "
              f"VOIs, each pasted twice, seed {args.seed}; {positives} positive and {negatives} negative candidates); "
              f"thresholds: the lowest probability adding at most {ADDED_FP} false positives per scan on the 20 "
              "validation inserted-nodule scans (seed 1); `python benchmarks/ground_glass_pool.py`")
    document = replace(scorer, thresholds=thresholds, source=source).to_dict() | {"validation": results}
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    rows = ["| operating point | pool | FP per scan | subsolid found | solid found |", "|---|---|---|---|---|"]
    for point, pair in results.items():
        for pool, r in pair.items():
            rows.append(f"| {point} | {pool} | {r['fp_per_scan']:.2f} | {r['subsolid_found']} / {r['subsolid']} "
                        f"| {r['solid_found']} / {r['solid']} |")
    print("\n".join([f"inputs {list(INPUTS)}", f"thresholds {thresholds}", "", *rows]))


if __name__ == "__main__":
    main()
