"""Could the shipped classifier find subsolid nodules among the faint blobs? (validation scans only)

The candidate filter keeps a scan's 300 strongest blobs; ground-glass and part-solid nodules
rank far behind the vessels (docs/results.md, "By size and texture"). This benchmark takes every
blob peak (up to ``--max-candidates``, from a response of 20 HU), scores each with the shipped
``convlstm_nodule`` and asks what a second pool of faint blobs would add at ``balanced``:

* the pool: blobs whose centre (smoothed by 0.6 / 1.5 / 1.5 voxels) lies between -800 and
  -300 HU, with a *blob fraction* ``strength / (centre HU + 900)`` of at least ``f`` (the blob
  response relative to the blob's own contrast with lung, so faint round opacities are not
  penalised for their low contrast while partial-volume vessel blobs are);
* a pool blob is reported when its classifier ROI score reaches ``t``.

It prints, per subsolid nodule, where it ranks and what the classifier says, then a table of
``f`` x ``t``: false positives per scan and subsolid / solid nodules found at ``balanced``, the
shipped detector alone and with the pool. References are the inserted nodules (LUNA16 hit rule:
a candidate within the nodule's radius). Validation-split VOIs on the training backgrounds, as
in ``lungai evaluate detection``'s validation scans; no LIDC test patient.

Usage::

    python benchmarks/subsolid_pool.py [--data ../shared/data] [--scans 14] [--max-candidates 6000]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from lungai.evaluation.detection_eval import EvalCase, inserted_cases
from lungai.models.checkpoint import load_model
from lungai.pipeline.detection import combined_score, roi_scores
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.preprocessing.candidates import CandidateConfig, find_candidates, strength_score
from lungai.preprocessing.detection_rois import extract_rois
from lungai.preprocessing.lung_mask import segment_lungs

logger = logging.getLogger("subsolid_pool")

REPO = Path(__file__).resolve().parents[1]
POOL_HU = (-800.0, -300.0)
SHIPPED_CANDIDATES = CandidateConfig().max_candidates
FRACTIONS = (0.35, 0.4, 0.45, 0.5)
ROI_THRESHOLDS = (0.85, 0.9, 0.93, 0.95)


@dataclass
class Scored:
    """Every candidate of the scans, as flat arrays (one entry per candidate)."""

    scan: np.ndarray
    rank: np.ndarray
    strength: np.ndarray
    centre_hu: np.ndarray
    roi: np.ndarray
    hit: np.ndarray
    combined: np.ndarray


def _score_case(case: EvalCase, model: torch.nn.Module, config: CandidateConfig) -> dict[str, np.ndarray]:
    """One scan's candidates with their centre HU, classifier ROI score and the nodule each hits (-1: none)."""
    lungs = segment_lungs(case.image).labels
    candidates = find_candidates(case.image, lungs, config)
    points = np.array([c.centre_lps_mm for c in candidates])
    smoothed = ndimage.gaussian_filter(sitk.GetArrayViewFromImage(case.image).astype(np.float32), (0.6, 1.5, 1.5))
    index = np.array([case.image.TransformPhysicalPointToIndex(p) for p in points])
    hit = np.full(len(candidates), -1)
    for k, nodule in enumerate(case.nodules):
        near = np.linalg.norm(points - np.asarray(nodule.center_mm), axis=1) <= nodule.diameter_mm / 2
        hit[near & (hit < 0)] = k
    strength = np.array([c.strength for c in candidates])
    roi = roi_scores(model, extract_rois(case.image, [c.centre_lps_mm for c in candidates]))
    logger.info("%s: %d candidates scored", case.scan_id, len(candidates))
    return {"rank": np.arange(len(candidates)), "strength": strength, "roi": roi, "hit": hit,
            "centre_hu": smoothed[index[:, 2], index[:, 1], index[:, 0]],
            "combined": combined_score(roi, np.array([strength_score(s) for s in strength]))}


def score_cases(cases: list[EvalCase], model: torch.nn.Module, max_candidates: int) -> Scored:
    """Score every faint and strong candidate of every case."""
    config = CandidateConfig(max_candidates=max_candidates, min_strength_hu=20.0)
    parts = [_score_case(case, model, config) for case in cases]
    scan = np.concatenate([np.full(len(p["rank"]), i) for i, p in enumerate(parts)])
    return Scored(scan, *(np.concatenate([p[key] for p in parts])
                          for key in ("rank", "strength", "centre_hu", "roi", "hit", "combined")))


def _found(scored: Scored, cases: list[EvalCase], textures: list[tuple[int, int, str]], selected: np.ndarray,
           solid: bool) -> int:
    return sum(1 for i, k, texture in textures if (texture == "solid") == solid
               and np.any((scored.scan == i) & (scored.hit == k) & selected))


def pool_table(scored: Scored, cases: list[EvalCase]) -> list[str]:
    """Markdown rows: the shipped detector at ``balanced`` alone and with each pool setting."""
    textures = [(i, k, t) for i, case in enumerate(cases) for k, t in enumerate(case.textures)]
    subsolid = sum(t != "solid" for _, _, t in textures)
    solid = len(textures) - subsolid
    shipped = (scored.rank < SHIPPED_CANDIDATES) & (scored.combined >= OPERATING_POINTS["balanced"].threshold)
    fraction = scored.strength / np.maximum(scored.centre_hu + 900.0, 50.0)
    in_range = (scored.centre_hu >= POOL_HU[0]) & (scored.centre_hu <= POOL_HU[1])

    def row(name: str, selected: np.ndarray, extra: float) -> str:
        fp = np.count_nonzero(selected & (scored.hit < 0)) / len(cases)
        return (f"| {name} | {extra:.0f} | {fp:.2f} | {_found(scored, cases, textures, selected, False)} / {subsolid} "
                f"| {_found(scored, cases, textures, selected, True)} / {solid} |")

    rows = ["| setting | extra ROIs per scan | FP per scan | subsolid found | solid found |", "|---|---|---|---|---|",
            row("shipped detector at `balanced`", shipped, 0)]
    for f in FRACTIONS:
        pool = in_range & (fraction >= f)
        extra = np.count_nonzero(pool & (scored.rank >= SHIPPED_CANDIDATES)) / len(cases)
        rows += [row(f"+ pool f >= {f}, ROI score >= {t}", shipped | (pool & (scored.roi >= t)), extra)
                 for t in ROI_THRESHOLDS]
    return rows


def nodule_rows(scored: Scored, cases: list[EvalCase]) -> list[str]:
    """Markdown rows: each subsolid nodule's best candidate (by ROI score)."""
    rows = ["| scan | texture | diameter (mm) | rank | strength (HU) | centre HU | ROI score | detection score |",
            "|---|---|---|---|---|---|---|---|"]
    for i, case in enumerate(cases):
        for k, (nodule, texture) in enumerate(zip(case.nodules, case.textures)):
            if texture == "solid":
                continue
            hits = np.flatnonzero((scored.scan == i) & (scored.hit == k))
            if not len(hits):
                rows.append(f"| {case.scan_id} | {texture} | {nodule.diameter_mm:.1f} | no blob peak | | | | |")
                continue
            j = hits[np.argmax(scored.roi[hits])]
            rows.append(f"| {case.scan_id} | {texture} | {nodule.diameter_mm:.1f} | {scored.rank[j]} "
                        f"| {scored.strength[j]:.0f} | {scored.centre_hu[j]:.0f} | {scored.roi[j]:.3f} "
                        f"| {scored.combined[j]:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--scans", type=int, default=14)
    parser.add_argument("--max-candidates", type=int, default=6000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    model = load_model(REPO / "weights" / "convlstm_nodule")
    cases = inserted_cases(args.data, "val", args.scans, 6, seed=1)
    scored = score_cases(cases, model, args.max_candidates)
    print("\n".join(nodule_rows(scored, cases) + [""] + pool_table(scored, cases)))


if __name__ == "__main__":
    main()
