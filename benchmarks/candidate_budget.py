"""What more candidates, a milder suppression or other classifiers give the detector (validation only).

On the 20 validation inserted-nodule scans of ``lungai evaluate detection`` (seed 1), each scan's
blob candidates are found once with ``--max`` candidates and scored as the detector scores them
(:func:`lungai.pipeline.detection.detection_scores`, no ground-glass pool) by the classifier of
``--weights`` (a single network or an ensemble checkpoint; several folders: the ensemble of them,
logits averaged, first as given). For each budget of ``--budgets`` (the strongest that many
candidates) it prints the share of nodules among the candidates, the CPM, and at the lowest threshold
with at most 1 false positive per scan the nodules found (subsolid ones apart). Every number is given
twice: with the backgrounds' own lesions ignored (:meth:`lungai.evaluation.detection_eval.EvalCase.scored`,
as ``lungai evaluate detection`` scores) and counted as false positives (the scoring before they were
known).

``--cascade G``: an ensemble's first member scores every candidate and the whole ensemble those whose
detection score by the first reaches ``G`` (default the detector's
:data:`lungai.pipeline.detection.CASCADE_GATE`; 0 rescores every candidate).

``--nms`` sets the candidate filter's non-maximum suppression: ``larger`` (shipped: a peak closer
to a stronger one than the larger of their radii is dropped), ``smaller`` (than the smaller
radius) or ``stronger`` (than the stronger peak's radius).

Usage::

    python benchmarks/candidate_budget.py [--data ../shared/data] [--weights weights/convlstm_nodule ...] \\
        [--max 1000] [--budgets 300,1000] [--nms larger] [--scans 20] [--cascade 0.3]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from lungai.evaluation import froc as froc_lib
from lungai.evaluation.detection_eval import EvalCase, inserted_cases
from lungai.models.checkpoint import load_model
from lungai.models.convlstm_nodule import ConvLSTMNoduleEnsemble
from lungai.pipeline.detection import CASCADE_GATE, Detection, detection_scores
from lungai.preprocessing import candidates as candidate_filter
from lungai.preprocessing.detection_rois import extract_rois
from lungai.preprocessing.lung_mask import segment_lungs

logger = logging.getLogger("candidate_budget")

REPO = Path(__file__).resolve().parents[1]


def _suppression(mode: str) -> Any:
    """Greedy non-maximum suppression with the radius rule ``mode``."""

    def suppress(points: np.ndarray, radii: np.ndarray, order: np.ndarray, limit: int) -> list[int]:
        kept: list[int] = []
        for i in order:
            if kept:
                d = np.linalg.norm(points[kept] - points[i], axis=1)
                rule = {"larger": np.maximum(radii[kept], radii[i]), "smaller": np.minimum(radii[kept], radii[i]),
                        "stronger": radii[kept]}[mode]
                if np.any(d < rule):
                    continue
            kept.append(int(i))
            if len(kept) >= limit:
                break
        return kept

    return suppress


def scan_candidates(case: EvalCase, max_candidates: int = 300
                    ) -> tuple[sitk.Image, list[candidate_filter.Candidate], np.ndarray, np.ndarray]:
    """The scan's lung labels, its blob candidates (strongest first), their ROIs and strength scores."""
    lungs = segment_lungs(case.image).labels
    found = candidate_filter.find_candidates(case.image, lungs,
                                             replace(candidate_filter.CandidateConfig(), max_candidates=max_candidates))
    rois = extract_rois(case.image, [c.centre_lps_mm for c in found]) if found else np.empty(0)
    strength = np.array([candidate_filter.strength_score(c.strength) for c in found])
    return lungs, found, rois, strength


def score_scan(case: EvalCase, classifier: nn.Module, max_candidates: int, gate: float) -> tuple[list[Detection], int]:
    """The scan's candidates, strongest first, with the detector's score, and how many ROIs the whole
    ensemble rescored (:func:`lungai.pipeline.detection.detection_scores`)."""
    _, found, rois, strength = scan_candidates(case, max_candidates)
    if not found:
        return [], 0
    scores, rescored = detection_scores(classifier, rois, strength, gate=gate)
    return [Detection(c.centre_lps_mm, c.radius_mm, float(s)) for c, s in zip(found, scores)], rescored


def summarise(cases: list[EvalCase], scored: list[list[Detection]], budget: int, ignore: bool) -> dict[str, Any]:
    """Candidate share, CPM and the 1-false-positive-per-scan point of the first ``budget`` candidates."""
    detections, nodules, textures = [], [], []
    for case, found in zip(cases, scored):
        kept = case.scored(found[:budget]) if ignore else found[:budget]
        detections += [froc_lib.ScanDetection(case.scan_id, d.centre_lps_mm, d.score or 0.0) for d in kept]
        nodules += case.nodules
        textures += case.textures
    result = froc_lib.froc(detections, nodules, len(cases))
    best, _ = froc_lib.match_detections(detections, nodules)
    threshold = result.thresholds[np.flatnonzero(result.fps_per_scan <= 1.0)[-1]]
    found_at = best >= threshold
    return {"candidates": float(np.isfinite(best).mean()), "cpm": result.cpm, "threshold": float(threshold),
            "found": int(found_at.sum()), "subsolid": int(sum(f for f, t in zip(found_at, textures) if t != "solid")),
            "nodules": len(nodules), "subsolid_nodules": sum(t != "solid" for t in textures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--weights", type=Path, nargs="+", default=[REPO / "weights" / "convlstm_nodule"])
    parser.add_argument("--max", type=int, default=1000, help="candidates found per scan")
    parser.add_argument("--budgets", default="300,1000", help="comma-separated candidate budgets to score")
    parser.add_argument("--nms", default="larger", choices=("larger", "smaller", "stronger"))
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--cascade", type=float, default=CASCADE_GATE,
                        help="an ensemble's other members score only where the first's detection score reaches "
                             "this (0: everywhere)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lungai").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    candidate_filter.suppress = _suppression(args.nms)  # type: ignore[assignment]  # benchmark-only variant
    models = [load_model(w, "cpu") for w in args.weights]
    classifier = models[0] if len(models) == 1 else ConvLSTMNoduleEnsemble.of(models)
    cases = inserted_cases(args.data, "val", args.scans, seed=1)
    scored, rescored = [], 0
    for case in cases:
        found, extra = score_scan(case, classifier, args.max, args.cascade)
        scored.append(found)
        rescored += extra
        logger.info("%s: %d candidates, %d rescored by the whole ensemble", case.scan_id, len(found), extra)
    print(f"{rescored / max(len(cases), 1):.1f} ROIs per scan rescored by the whole ensemble (gate {args.cascade})")
    for budget in (int(b) for b in args.budgets.split(",")):
        for ignore, label in ((True, "backgrounds' lesions ignored"), (False, "counted as false positives")):
            s = summarise(cases, scored, budget, ignore)
            print(f"{budget} candidates, nms {args.nms}, {label}: {s['candidates']:.3f} of the nodules among them, "
                  f"CPM {s['cpm']:.3f}; at 1 FP/scan (threshold {s['threshold']:.4f}) {s['found']}/{s['nodules']} "
                  f"found, subsolid {s['subsolid']}/{s['subsolid_nodules']}")


if __name__ == "__main__":
    main()
