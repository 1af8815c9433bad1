"""Would a second classifier for the candidates at the lung boundary find juxtapleural nodules (validation only)?

On the validation inserted-nodule scans of ``lungai evaluate detection`` (nodules inside the lungs,
seed 1) and its juxtapleural scans (every nodule against the lung boundary, seed 1 +
:data:`~lungai.evaluation.detection_eval.PLEURAL_SEED`), each scan's 300 blob candidates are scored
as the detector scores them (:func:`lungai.pipeline.detection.detection_scores`, no ground-glass
pool) by the shipped classifier (``--weights``) and by a second one (``--boundary``, e.g. a run of
``lungai train detection --pleural-fraction 0.3``). A candidate is *at the boundary* when its blob
reaches within ``--margin`` mm of the lung mask's edge (depth of its centre in the mask minus its
radius). Printed per rule, for each set and both pooled (one FROC over all scans): CPM and the
nodules found at the lowest threshold with at most 1 false positive per scan, the backgrounds' own
lesions ignored as ``lungai evaluate detection`` ignores them. Rules: the shipped classifier
everywhere; the second one at the boundary; the higher of the two at the boundary; the second one
everywhere.

Usage::

    python benchmarks/boundary_classifier.py --boundary runs/detection/convlstm_p36s0 \\
        [--weights weights/convlstm_nodule] [--scans 20] [--pleural-scans 10] [--margin 2]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from candidate_budget import scan_candidates, summarise

from lungai.evaluation.detection_eval import PLEURAL_SEED, EvalCase, inserted_cases
from lungai.models.checkpoint import load_model
from lungai.pipeline.detection import Detection, detection_scores
from lungai.preprocessing.candidates import Candidate

logger = logging.getLogger("boundary_classifier")

REPO = Path(__file__).resolve().parents[1]
RULES = ("shipped everywhere", "second at the boundary", "higher of the two at the boundary", "second everywhere")


def score_scan(case: EvalCase, shipped: torch.nn.Module, second: torch.nn.Module,
               margin_mm: float) -> tuple[list[Candidate], np.ndarray, np.ndarray, np.ndarray]:
    """The scan's candidates, both classifiers' detection scores, and whether each is at the boundary."""
    lungs, found, rois, strength = scan_candidates(case)
    first, _ = detection_scores(shipped, rois, strength)
    other, _ = detection_scores(second, rois, strength)
    depth = sitk.SignedMaurerDistanceMap(sitk.Cast(lungs > 0, sitk.sitkUInt8), insideIsPositive=True,
                                         squaredDistance=False, useImageSpacing=True)
    edge = np.array([depth[depth.TransformPhysicalPointToIndex(c.centre_lps_mm)] - c.radius_mm for c in found])
    return found, first, other, edge <= margin_mm


def combined(first: np.ndarray, other: np.ndarray, boundary: np.ndarray, rule: str) -> np.ndarray:
    """The scores a rule of :data:`RULES` gives."""
    if rule == RULES[0]:
        return first
    if rule == RULES[1]:
        return np.where(boundary, other, first)
    if rule == RULES[2]:
        return np.where(boundary, np.maximum(first, other), first)
    return other


def summary(cases: list[EvalCase], scored: list, rule: str) -> str:
    """CPM and the nodules found at 1 false positive per scan (:func:`candidate_budget.summarise`)."""
    detections = [[Detection(c.centre_lps_mm, c.radius_mm, float(s)) for c, s in zip(found, combined(*scores, rule))]
                  for found, *scores in scored]
    result = summarise(cases, detections, budget=len(max(detections, key=len, default=[])), ignore=True)
    return f"CPM {result['cpm']:.3f}, {result['found']}/{result['nodules']} at 1 FP/scan"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "convlstm_nodule")
    parser.add_argument("--boundary", type=Path, required=True, help="the second classifier's checkpoint folder")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--pleural-scans", type=int, default=10)
    parser.add_argument("--margin", type=float, default=2.0, help="mm between a blob and the lung mask's edge")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lungai").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    shipped, second = load_model(args.weights, "cpu"), load_model(args.boundary, "cpu")
    sets = {"inside": inserted_cases(args.data, "val", args.scans, seed=1),
            "boundary": inserted_cases(args.data, "val", args.pleural_scans, seed=1 + PLEURAL_SEED,
                                       pleural_fraction=1.0)}
    scored = {}
    for name, cases in sets.items():
        scored[name] = [score_scan(case, shipped, second, args.margin) for case in cases]
        at = sum(int(s[3].sum()) for s in scored[name]) / max(len(cases), 1)
        logger.info("%s: %d scans, %.0f of 300 candidates per scan at the boundary", name, len(cases), at)
    every = [c for cases in sets.values() for c in cases]
    every_scored = [s for name in sets for s in scored[name]]
    for rule in RULES:
        parts = [f"{name} {summary(cases, scored[name], rule)}" for name, cases in sets.items()]
        print(f"{rule}: " + "; ".join(parts) + f"; both {summary(every, every_scored, rule)}")


if __name__ == "__main__":
    main()
