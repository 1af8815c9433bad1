"""How the detector's ensemble scores candidates, inside the lungs and at their boundary (validation only).

On the validation inserted-nodule scans of ``lungai evaluate detection`` (nodules inside the lungs,
seed 1) and its juxtapleural scans (every nodule against the lung boundary, seed 1 +
:data:`~lungai.evaluation.detection_eval.PLEURAL_SEED`), each scan's 300 blob candidates get the centre
logit of every member of ``--weights`` (an ensemble checkpoint, boundary members last if it has any) in
each of the detector's :data:`~lungai.pipeline.detection.FLIPS`, and the depth of their centre in the
lung mask (signed Maurer distance; :func:`lungai.pipeline.detection.at_lung_boundary` gives the same
decision from a small box). The candidates and their ROIs are cached per scan in ``--cache``, and each
member's logits per scan and member (named by a hash of its weights), so ensembles that share members
share the work and the rules are compared in seconds.

Printed per rule, for each set and both pooled (one FROC over all scans): CPM and the nodules found at
the lowest threshold with at most 1 false positive per scan, the backgrounds' own lesions ignored as
``lungai evaluate detection`` ignores them (blob candidates only, no ground-glass pool). The rules: the
general members' cascade (the first member on every candidate, all of them where its score reaches a
gate) without flips, as the shipped ensemble scores, and with the flips from several gates; with
boundary members, also all members averaged and the boundary rule (the boundary members' mean
weighted :data:`~lungai.pipeline.detection.BOUNDARY_WEIGHT` at candidates no deeper than
:data:`~lungai.pipeline.detection.BOUNDARY_DEPTH_MM`) with other depths, weights, flips and cascade
gates, and with candidates near the mediastinum (:func:`lungai.preprocessing.lesion_region.mediastinum`)
left out of it.

Usage::

    python benchmarks/boundary_classifier.py [--weights runs/detection/convlstm_ensP] [--scans 20] \
        [--pleural-scans 10] [--cache runs/boundary_cache/val_seed1]   # about 30 min on one thread the first time
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from candidate_budget import scan_candidates, summarise
from scipy import ndimage
from scipy.special import expit, logit

from lungai.evaluation.detection_eval import PLEURAL_SEED, EvalCase, inserted_cases
from lungai.models.checkpoint import load_model
from lungai.models.convlstm_nodule import ConvLSTMNoduleEnsemble
from lungai.pipeline.detection import (
    BOUNDARY_CASCADE_GATE,
    BOUNDARY_DEPTH_MM,
    BOUNDARY_WEIGHT,
    CASCADE_GATE,
    FLIPS,
    Detection,
    blend_logits,
    combined_score,
    roi_scores,
)
from lungai.preprocessing.lesion_region import mediastinum

logger = logging.getLogger("boundary_classifier")

REPO = Path(__file__).resolve().parents[1]
Scan = dict[str, Any]


def member_key(member: torch.nn.Module) -> str:
    """A member's cache name: the sha256 of its parameters and buffers (12 hex digits)."""
    digest = hashlib.sha256()
    for name, value in sorted(member.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def cache_scan(case: EvalCase, members: list[torch.nn.Module], folder: Path) -> Scan:
    """A scan's candidates (centres, radii, strength scores, centre depths) and every member's centre logits in
    every flip. The candidates and their ROIs are cached once per scan, each member's logits once per scan
    and member (:func:`member_key`), so another ensemble of the same members costs nothing."""
    path, roi_path = folder / f"{case.scan_id}.pkl", folder / f"{case.scan_id}.rois.npy"
    scan = pickle.loads(path.read_bytes()) if path.is_file() and roi_path.is_file() else {}
    rois = None
    if "medial" not in scan:  # no cache, or one from before the mediastinal distance was kept
        lungs, found, rois, strength = scan_candidates(case)
        depth = sitk.SignedMaurerDistanceMap(sitk.Cast(lungs > 0, sitk.sitkUInt8), insideIsPositive=True,
                                             squaredDistance=False, useImageSpacing=True)
        scan = {"centres": [c.centre_lps_mm for c in found], "radii": [c.radius_mm for c in found],
                "strength": strength,
                "depth": np.array([depth[depth.TransformPhysicalPointToIndex(c.centre_lps_mm)] for c in found]),
                "medial": _medial_distance(lungs, [c.centre_lps_mm for c in found])}
        np.save(roi_path, rois)
        path.write_bytes(pickle.dumps(scan))
    scan["logits"] = {}
    for i, member in enumerate(members):
        member_path = folder / f"{case.scan_id}.{member_key(member)}.npz"
        if not member_path.is_file():
            rois = np.load(roi_path) if rois is None else rois
            partial = member_path.with_name(member_path.name + ".partial.npz")  # a killed run leaves no stub
            np.savez(partial, *[logit(roi_scores(member, np.ascontiguousarray(np.flip(rois, axes)) if axes
                                                 else rois)) for axes in FLIPS])
            partial.replace(member_path)
            logger.info("%s: member %d scored", case.scan_id, i)
        with np.load(member_path) as stored:
            scan["logits"].update({(i, axes): stored[f"arr_{k}"] for k, axes in enumerate(FLIPS)})
    return scan


def _medial_distance(lungs: sitk.Image, centres: list) -> np.ndarray:
    """Each centre's distance (mm) from the mediastinum (:func:`lungai.preprocessing.lesion_region.mediastinum`;
    inf on a scan without one)."""
    between = mediastinum(sitk.GetArrayFromImage(lungs))
    if not between.any():
        return np.full(len(centres), np.inf)
    distance = ndimage.distance_transform_edt(~between, sampling=np.asarray(lungs.GetSpacing())[::-1])
    index = [lungs.TransformPhysicalPointToIndex([float(v) for v in c]) for c in centres]
    return np.array([distance[k, j, i] for i, j, k in index])


def _members_logits(scan: Scan, members: range, flips: tuple) -> np.ndarray:
    """``(M, N)``: each member's centre logits averaged over ``flips``."""
    return np.array([np.mean([scan["logits"][(i, axes)] for axes in flips], axis=0) for i in members])


def scores(scan: Scan, rule: dict[str, Any], n_members: int, special: int) -> np.ndarray:
    """Detection scores of a scan's candidates under ``rule`` (keys: members, flips, depth, weight, gate).

    ``general``: the members that are not boundary members, as the detector's cascade scores them: the
    first member unflipped on every candidate, the mean of them all in ``flips`` where its score reaches
    ``gate``. ``all``: every member in ``flips`` on every candidate. ``boundary``: the boundary rule."""
    strength = scan["strength"]
    if rule["members"] == "general":
        general = range(n_members - special)
        first = combined_score(expit(_members_logits(scan, range(1), ((),))[0]), strength)
        full = combined_score(expit(_members_logits(scan, general, rule["flips"]).mean(axis=0)), strength)
        return np.where(first >= rule["gate"], full, first)
    logits = _members_logits(scan, range(n_members), rule["flips"])
    if rule["members"] == "all":
        return combined_score(expit(logits.mean(axis=0)), strength)
    at = (scan["depth"] >= 0) & (scan["depth"] <= rule["depth"]) & (scan["medial"] > rule.get("medial", -1.0))
    full = combined_score(expit(blend_logits(logits, special, at, rule["weight"])), strength)
    if rule["gate"] is None:
        return full
    plain = _members_logits(scan, range(n_members), ((),))
    first = np.where(at, blend_logits(plain[[0, *range(n_members - special, n_members)]], special, at,
                                      rule["weight"]), plain[0])
    cheap = combined_score(expit(first), strength)
    return np.where(cheap >= rule["gate"], full, cheap)


def summary(cases: list[EvalCase], scans: list[Scan], scored: list[np.ndarray]) -> str:
    """CPM and the nodules found at 1 false positive per scan (:func:`candidate_budget.summarise`)."""
    detections = [[Detection(c, r, float(v)) for c, r, v in zip(scan["centres"], scan["radii"], values)]
                  for scan, values in zip(scans, scored)]
    result = summarise(cases, detections, budget=len(max(detections, key=len, default=[])), ignore=True)
    return f"{result['cpm']:.3f} {result['found']}/{result['nodules']}"


def rules(special: int) -> list[tuple[str, dict[str, Any]]]:
    """The rules compared: the general members' cascade without and with flips, then (``special``: an
    ensemble with boundary members) the boundary rule of :func:`lungai.pipeline.detection.detection_scores`
    and its variants."""
    out = [("general members, no flips (the shipped cascade)", {"members": "general", "flips": ((),),
                                                                "gate": CASCADE_GATE})]
    out += [(f"general members, flips from {g}", {"members": "general", "flips": FLIPS, "gate": g})
            for g in (0.0, CASCADE_GATE, 0.5, BOUNDARY_CASCADE_GATE)]
    if not special:
        return out
    shipped = {"members": "boundary", "flips": FLIPS, "depth": BOUNDARY_DEPTH_MM, "weight": BOUNDARY_WEIGHT,
               "gate": BOUNDARY_CASCADE_GATE}
    out += [("all members, flips", {"members": "all", "flips": FLIPS}),
            ("boundary rule", shipped),
            ("boundary rule, every candidate rescored", {**shipped, "gate": None})]
    out += [(f"depth {d} mm", {**shipped, "depth": d}) for d in (1.0, 2.0, 5.0, 8.0)]
    out += [(f"weight {w}", {**shipped, "weight": w}) for w in (0.5, 0.6, 0.8, 1.0)]
    out += [(f"flips {f}", {**shipped, "flips": f}) for f in (((),), ((), (2,)), ((), (1,)), FLIPS[:3])]
    out += [(f"gate {g}", {**shipped, "gate": g}) for g in (0.4, 0.5)]
    out += [(f"not within {d:g} mm of the mediastinum", {**shipped, "medial": d}) for d in (5.0, 10.0, 20.0)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--weights", type=Path, default=REPO / "runs" / "detection" / "convlstm_ensP",
                        help="an ensemble checkpoint with boundary members (lungai train detection-ensemble "
                             "--boundary-member)")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--pleural-scans", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "boundary_cache" / "val_seed1",
                        help="folder of the per-scan caches (candidates, ROIs, each member's logits)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lungai").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    model = load_model(args.weights, "cpu")
    if not isinstance(model, ConvLSTMNoduleEnsemble):
        parser.error(f"{args.weights} is not an ensemble")
    members, special = list(model.members), model.config.boundary_members
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = {"inside": inserted_cases(args.data, "val", args.scans, seed=1),
            "boundary": inserted_cases(args.data, "val", args.pleural_scans, seed=1 + PLEURAL_SEED,
                                       pleural_fraction=1.0)}
    cached = {name: [cache_scan(c, members, args.cache) for c in cases]
              for name, cases in sets.items()}
    groups = [(sets[name], cached[name]) for name in sets]
    groups.append(([c for cases, _ in groups for c in cases], [s for _, scans in groups for s in scans]))
    print("rule: CPM and nodules found at 1 FP/scan, nodules inside the lungs; against the boundary; both")
    for label, rule in rules(special):
        parts = [summary(cases, scans, [scores(s, rule, len(members), special) for s in scans])
                 for cases, scans in groups]
        print(f"{label}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
