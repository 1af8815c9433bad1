"""Whole-scan evaluation of nodule detection: FROC, CPM, sensitivity at 1/2/4 FP per scan.

Two kinds of cases:

* ``lidc``: the whole-scan test patients LIDC-IDRI-0001 and 0002 with their reader XML; the
  references are the consensus nodules (>= 3 mm) marked by at least ``min_readers`` readers,
  nodules marked by fewer readers are excluded findings (detections on them are ignored, as in
  LUNA16). Small-nodule and non-nodule marks are not excluded: detections on them count as
  false positives (stricter than LUNA16).
* ``inserted``: background scans with VOIs of one split pasted in
  (:mod:`lungai.data.lesion_insertion`); the test split for evaluation, the validation split for
  choosing the operating points. The references are the pasted nodules (centroid of the pasted
  mask, volume-equivalent diameter). The backgrounds are the scans the classifier's negatives
  came from, so false positives per scan on these cases are optimistic; the LIDC cases are the
  honest count.

Each case runs the pipeline's own steps: :func:`lungai.preprocessing.lung_mask.segment_lungs`,
then :func:`lungai.pipeline.detection.detect_nodules` with a threshold of 0 (every candidate,
scored), and LUNA16's hit rule (:mod:`lungai.evaluation.froc`).

Sensitivities are also reported by nodule size (:data:`SIZE_BINS`) and, for inserted nodules,
by the VOI's ``nodules.csv`` texture rating (non-solid 1-2, part-solid 3, solid 4-5; an analysis
variable only). The operating points are the shipped table's, or those a run folder passed as
``weights`` chose for itself (its ``operating_points.json``), so a candidate checkpoint is scored
at its own thresholds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from torch import nn

from lungai.evaluation import froc as froc_lib
from lungai.pipeline.detection import Detection, DetectionConfig, detect_nodules
from lungai.pipeline.operating_points import (
    CANDIDATE_OPERATING_POINTS,
    OPERATING_POINTS,
    points_from_inference,
)

logger = logging.getLogger(__name__)

LIDC_PATIENTS = ("LIDC-IDRI-0001", "LIDC-IDRI-0002")
REPORT_RATES = (1.0, 2.0, 4.0)
SIZE_BINS = (("<6 mm", 0.0, 6.0), ("6-10 mm", 6.0, 10.0), (">=10 mm", 10.0, math.inf))
"""Nodule size groups (volume-equivalent diameter) of the report."""
PLEURAL_SEED = 100
"""Added to the evaluation's seed for its juxtapleural scans, so that their sites differ from the other scans'."""

OPERATING_TARGETS = {"high": 4.0, "balanced": 1.0, "specific": 0.25}
"""Validation false positives per scan each operating point is chosen for."""


@dataclass
class EvalCase:
    """One scan to detect in.

    Attributes:
        scan_id: its name.
        image: int16 HU, LPS.
        nodules: the reference nodules.
        excluded: findings whose detections are ignored.
        textures: each nodule's texture group (``non-solid``, ``part-solid``, ``solid``); empty
            where unknown (the LIDC cases).
        ignored: bool ``(z, y, x)`` array on the image's grid: the background's own real lesions
            (inserted cases); a detection centred there is neither a hit nor a false positive, as
            for ``excluded`` findings. ``None``: nothing ignored.
    """

    scan_id: str
    image: sitk.Image = field(repr=False)
    nodules: list[froc_lib.Finding]
    excluded: list[froc_lib.Finding] = field(default_factory=list)
    textures: list[str] = field(default_factory=list)
    ignored: np.ndarray | None = field(default=None, repr=False)

    def ignores(self, point_lps_mm: Sequence[float]) -> bool:
        """Whether a point lies on an ignored voxel."""
        if self.ignored is None:
            return False
        x, y, z = self.image.TransformPhysicalPointToIndex([float(v) for v in point_lps_mm])
        inside = all(0 <= i < n for i, n in zip((z, y, x), self.ignored.shape, strict=True))
        return bool(inside and self.ignored[z, y, x])

    def scored(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections not centred on an ignored voxel."""
        return [d for d in detections if not self.ignores(d.centre_lps_mm)]


def lidc_cases(data_root: str | Path, patients: Sequence[str] = LIDC_PATIENTS, min_readers: int = 1) -> list[EvalCase]:
    """The LIDC whole-scan test patients with their consensus nodules as references."""
    from lungai.data.lidc_consensus import consensus_nodules
    from lungai.data.lidc_xml import parse_lidc_xml
    from lungai.io.reader import read_scan

    cases = []
    for patient in patients:
        folder = Path(data_root) / "lidc_scans" / patient
        scan = next((p for p in (folder / "dicom.zip", folder / f"{patient}.nrrd") if p.exists()), folder)
        volume = read_scan(scan)
        found = consensus_nodules(parse_lidc_xml(folder / "annotations.xml"), volume.image,
                                  original_orientation=volume.original_orientation)
        findings = [(froc_lib.Finding(patient, n.centroid_lps, n.diameter_mm), n.num_readers) for n in found]
        cases.append(EvalCase(patient, volume.image, [f for f, r in findings if r >= min_readers],
                              [f for f, r in findings if r < min_readers]))
        logger.info("%s: %d reference nodule(s), %d excluded", patient, len(cases[-1].nodules), len(cases[-1].excluded))
    return cases


def inserted_cases(data_root: str | Path, split: str, num_scans: int, nodules_per_scan: int = 6, seed: int = 0,
                   backgrounds: Sequence[Any] | None = None, pleural_fraction: float = 0.0) -> list[EvalCase]:
    """Background scans with VOIs of ``split`` pasted in (each VOI at most once, in a seeded order).

    Args:
        data_root: the shared data folder (``lidc_vois/``, ``backgrounds/``, ``lung_pet_ct_dx/``).
        split: ``val`` or ``test`` (never ``train``: those nodules trained the classifier).
        num_scans: how many scans to make (alternating over the backgrounds).
        nodules_per_scan: VOIs pasted per scan.
        seed: random seed of the VOI order, placements and flips.
        backgrounds: loaded :class:`lungai.data.lesion_insertion.Background` objects (default: all).
        pleural_fraction: share of the nodules placed against the lung boundary (juxtapleural).

    Raises:
        ValueError: ``split`` is ``train``.
    """
    from lungai.data.detection_dataset import texture_group
    from lungai.data.lesion_insertion import (
        BACKGROUND_NAMES,
        InsertionConfig,
        augment_voi,
        load_background,
        place_nodules,
    )
    from lungai.data.lidc_vois import list_vois
    from lungai.data.splits import cases_for_split, load_split

    if split == "train":
        raise ValueError("inserted evaluation scans are made from val or test VOIs, never train")
    vois = [c for c in cases_for_split(list_vois(Path(data_root) / "lidc_vois").cases, load_split(), split)
            if c.diameter_mm >= 3.0]
    rng = np.random.default_rng([seed, 7])
    rng.shuffle(vois)
    loaded = list(backgrounds) if backgrounds is not None else [load_background(n, data_root) for n in BACKGROUND_NAMES]
    cases = []
    for i in range(num_scans):
        background = loaded[i % len(loaded)]
        chosen = vois[i * nodules_per_scan:(i + 1) * nodules_per_scan]
        if not chosen:
            break
        scan = place_nodules(background, [augment_voi(c.load(), rng) for c in chosen], rng,
                             InsertionConfig(pleural_fraction=pleural_fraction))
        scan_id = f"{split}{'_pleural' if pleural_fraction else ''}_{i:02d}_{background.name}"
        nodules = [froc_lib.Finding(scan_id, n.centre_lps_mm, n.diameter_mm) for n in scan.nodules]
        textures = {c.case_id: texture_group(c) for c in chosen}
        cases.append(EvalCase(scan_id, scan.image, nodules, textures=[textures[n.case_id] for n in scan.nodules],
                              ignored=background.known_lesions()))
    return cases


def detect_in(cases: Sequence[EvalCase], classifier: nn.Module | None, device: str = "cpu",
              lung_cache: dict[str, sitk.Image] | None = None) -> list[froc_lib.ScanDetection]:
    """Every scored candidate of every case (threshold 0), as FROC detections.

    Args:
        cases: the scans.
        classifier: the false-positive classifier, or ``None`` for candidate strength scores.
        device: where the classifier runs.
        lung_cache: scan id -> lung labels, filled as masks are made (reuse it for a second pass).
    """
    from lungai.preprocessing.lung_mask import segment_lungs

    cache = {} if lung_cache is None else lung_cache
    detections = []
    for case in cases:
        start = time.perf_counter()
        if case.scan_id not in cache:
            cache[case.scan_id] = segment_lungs(case.image).labels
        lungs = cache[case.scan_id]
        found = case.scored(detect_nodules(case.image, lungs, DetectionConfig(threshold=0.0), device, classifier))
        detections += [froc_lib.ScanDetection(case.scan_id, d.centre_lps_mm, d.score or 0.0) for d in found]
        logger.info("%s: %d scored candidates in %.1f s", case.scan_id, len(found), time.perf_counter() - start)
    return detections


def at_threshold(detections: Sequence[froc_lib.ScanDetection], cases: Sequence[EvalCase],
                 threshold: float) -> dict[str, Any]:
    """Sensitivity, false positives per scan and nodules found at one score threshold."""
    nodules = [n for c in cases for n in c.nodules]
    excluded = [n for c in cases for n in c.excluded]
    kept = [d for d in detections if d.score >= threshold]
    best, fps = froc_lib.match_detections(kept, nodules, excluded)
    return {"threshold": threshold, "fp_per_scan": len(fps) / len(cases),
            "sensitivity": float(np.isfinite(best).mean()) if nodules else math.nan,
            "found": int(np.isfinite(best).sum()), "nodules": len(nodules)}


def choose_operating_points(result: froc_lib.FROCResult,
                            targets: dict[str, float] = OPERATING_TARGETS) -> dict[str, float]:
    """The lowest threshold whose false positives per scan stay within each target."""
    chosen = {}
    for name, target in targets.items():
        allowed = np.flatnonzero(result.fps_per_scan <= target)
        chosen[name] = float(result.thresholds[allowed[-1]]) if len(allowed) else math.inf
    return chosen


def _size_group(diameter_mm: float) -> str:
    return next(name for name, low, high in SIZE_BINS if low <= diameter_mm < high)


def breakdown(groups: Sequence[str], best: np.ndarray, thresholds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per group: nodules, candidate sensitivity and sensitivity at each threshold.

    Args:
        groups: each nodule's group name.
        best: each nodule's best hitting detection score (``-inf`` where no candidate hits it).
        thresholds: operating point name -> score threshold.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(groups):
        scores = np.asarray([b for g, b in zip(groups, best) if g == name], float)
        out[name] = {"nodules": len(scores), "candidates": int(np.isfinite(scores).sum()),
                     **{point: int(np.sum(scores >= t)) for point, t in thresholds.items()}}
    return out


def summarize(cases: Sequence[EvalCase], detections: Sequence[froc_lib.ScanDetection],
              with_classifier: bool = True, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """FROC, CPM, sensitivity at 1/2/4 FP per scan, each operating point's numbers, by size and texture.

    Args:
        cases: the scans.
        detections: every scored candidate of every scan.
        with_classifier: the scores are the classifier's (else the candidate strength's).
        thresholds: operating point name -> threshold; default: the shipped table.
    """
    nodules = [n for c in cases for n in c.nodules]
    excluded = [n for c in cases for n in c.excluded]
    result = froc_lib.froc(detections, nodules, len(cases), excluded)
    rates = froc_lib.sensitivity_at(result.fps_per_scan, result.sensitivity, REPORT_RATES)
    table = OPERATING_POINTS if with_classifier else CANDIDATE_OPERATING_POINTS
    thresholds = thresholds or {name: p.threshold for name, p in table.items()}
    best, _ = froc_lib.match_detections(detections, nodules, excluded)
    textures = [t for c in cases for t in (c.textures or ["unknown"] * len(c.nodules))]
    return {
        "scans": [c.scan_id for c in cases],
        "num_scans": len(cases),
        "num_nodules": len(nodules),
        "candidate_sensitivity": float(np.isfinite(best).mean()),
        "candidates_per_scan": len(detections) / len(cases),
        "cpm": result.cpm,
        "sensitivity_at_fp": {f"{r:g}": float(s) for r, s in zip(REPORT_RATES, rates)},
        "cpm_rates": {f"{r:g}": float(s) for r, s in zip(result.fp_rates, result.sensitivities_at_rates)},
        "operating_points": {name: at_threshold(detections, cases, t) for name, t in thresholds.items()},
        "by_size": breakdown([_size_group(n.diameter_mm) for n in nodules], best, thresholds),
        "by_texture": breakdown(textures, best, thresholds),
        "nodules": [{"scan_id": n.scan_id, "centre_lps_mm": list(n.center_mm), "diameter_mm": n.diameter_mm,
                     "texture": t, "best_score": None if not np.isfinite(b) else float(b)}
                    for n, t, b in zip(nodules, textures, best)],
        "froc": {"fps_per_scan": result.fps_per_scan.tolist(), "sensitivity": result.sensitivity.tolist(),
                 "thresholds": [None if not np.isfinite(t) else float(t) for t in result.thresholds]},
        "_result": result,
    }


def froc_png(curves: Sequence[tuple[dict[str, Any], str]], path: Path) -> None:
    """Plot FROC curves (false positives per scan on a log axis) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for summary, label in curves:
        curve = summary["froc"]
        fps = np.maximum(np.asarray(curve["fps_per_scan"]), 1e-2)
        ax.step(fps, curve["sensitivity"], where="post", label=f"{label} (CPM {summary['cpm']:.3f})")
    ax.set_xscale("log")
    ax.set_xlim(0.1, 64)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write a summary as JSON (without the in-memory FROC object)."""
    path.write_text(json.dumps({k: v for k, v in summary.items() if not k.startswith("_")}, indent=2) + "\n",
                    encoding="utf-8")


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """A short report: one row per case set."""
    lines = ["| cases | scans | nodules | candidate sens. | sens @1 FP | @2 FP | @4 FP | CPM | "
             "high: sens / FP | balanced: sens / FP | specific: sens / FP |", "|" + "---|" * 11]
    for name, s in summaries.items():
        ops = " | ".join(f"{o['sensitivity']:.2f} / {o['fp_per_scan']:.1f}" for o in s["operating_points"].values())
        lines.append(f"| {name} | {s['num_scans']} | {s['num_nodules']} | {s['candidate_sensitivity']:.2f} | "
                     + " | ".join(f"{v:.2f}" for v in s["sensitivity_at_fp"].values()) + f" | {s['cpm']:.3f} | {ops} |")
    lines += ["", "Nodules found (of all, as candidates, at each operating point), by size and by texture:", "",
              "| cases | group | nodules | candidates | high | balanced | specific |", "|" + "---|" * 7]
    for name, s in summaries.items():
        for key in ("by_size", "by_texture"):
            for group, g in s.get(key, {}).items():
                found = " | ".join(f"{g[p]} ({g[p] / g['nodules']:.2f})" for p in ("high", "balanced", "specific")
                                   if p in g)
                lines.append(f"| {name} | {group} | {g['nodules']} | {g['candidates']} | {found} |")
    return "\n".join(lines) + "\n"


def run_thresholds(weights: Path | None) -> dict[str, float] | None:
    """The classifier thresholds a checkpoint folder chose for itself, else ``None``.

    A training run's ``operating_points.json``, else the operating points its ``config.json``
    records (``inference``, as ``lungai train detection`` writes them and a release keeps them).
    """
    from lungai.models.checkpoint import read_header

    if weights is None:
        return None
    path = Path(weights) / "operating_points.json"
    if path.exists():
        points = json.loads(path.read_text(encoding="utf-8"))["classifier"]["operating_points"]
        thresholds = {name: float(p["threshold"]) for name, p in points.items()}
    else:
        path = Path(weights) / "config.json"
        block = (read_header(weights).get("inference") or {}) if path.exists() else {}
        if not block.get("operating_points"):
            return None
        thresholds = {name: p.threshold for name, p in points_from_inference(block).items()}
    logger.info("operating points of %s: %s", path, {k: round(v, 4) for k, v in thresholds.items()})
    return thresholds


@dataclass(frozen=True)
class DetectionEvalConfig:
    """What ``lungai evaluate detection`` runs.

    Attributes:
        data_root: the shared data folder (``lidc_scans/``, ``lidc_vois/``, backgrounds).
        output: folder for ``metrics.json``, ``froc.json``, ``froc.png``, ``report.md``.
        weights: the classifier's checkpoint folder; ``None`` scores by candidate strength.
        split: VOIs of the inserted-nodule scans: ``test`` (evaluation) or ``val``.
        inserted_scans: how many inserted-nodule scans to make (0: none).
        nodules_per_scan: VOIs pasted per inserted scan.
        lidc: also evaluate on LIDC-IDRI-0001 and 0002.
        min_readers: LIDC nodules marked by fewer readers are excluded findings.
        device: where the classifier runs.
        seed: seed of the inserted scans.
        candidate_baseline: also score the same cases by candidate strength alone.
        pleural_scans: how many scans with every nodule against the lung boundary (juxtapleural; the
            split's VOIs again, other sites; seed ``seed + PLEURAL_SEED``) to make (0: none).
    """

    data_root: Path
    output: Path
    weights: Path | None = None
    split: str = "test"
    inserted_scans: int = 8
    nodules_per_scan: int = 6
    lidc: bool = True
    min_readers: int = 1
    device: str = "cpu"
    seed: int = 1
    candidate_baseline: bool = True
    pleural_scans: int = 8


def evaluate_detection(config: DetectionEvalConfig) -> dict[str, dict[str, Any]]:
    """Run the detector on the case sets and write the FROC report.

    Returns:
        Case set name (``lidc``, ``inserted_<split>``) -> its summary.
    """
    from lungai.models.checkpoint import load_model

    classifier = load_model(config.weights, config.device) if config.weights is not None else None
    sets: dict[str, list[EvalCase]] = {}
    if config.lidc:
        sets["lidc"] = lidc_cases(config.data_root, min_readers=config.min_readers)
    if config.inserted_scans:
        sets[f"inserted_{config.split}"] = inserted_cases(config.data_root, config.split, config.inserted_scans,
                                                          config.nodules_per_scan, config.seed)
    if config.pleural_scans:
        sets[f"pleural_{config.split}"] = inserted_cases(config.data_root, config.split, config.pleural_scans,
                                                         config.nodules_per_scan, config.seed + PLEURAL_SEED,
                                                         pleural_fraction=1.0)
    if not sets:
        raise ValueError("nothing to evaluate: no LIDC cases and no inserted scans")
    summaries = {}
    thresholds = run_thresholds(config.weights)
    for name, cases in sets.items():
        lungs: dict[str, sitk.Image] = {}
        summaries[name] = summarize(cases, detect_in(cases, classifier, config.device, lungs), classifier is not None,
                                    thresholds)
        if classifier is not None and config.candidate_baseline:
            summaries[f"{name}_candidates_only"] = summarize(cases, detect_in(cases, None, lung_cache=lungs), False)
    config.output.mkdir(parents=True, exist_ok=True)
    for name, summary in summaries.items():
        write_summary(summary, config.output / f"froc_{name}.json")
    froc_png([(s, n) for n, s in summaries.items()], config.output / "froc.png")
    metrics: dict[str, Any] = {name: {k: v for k, v in s.items() if k not in ("froc", "_result")}
                               for name, s in summaries.items()}
    metrics["weights"] = str(config.weights) if config.weights else None
    metrics["operating_points"] = "the run's operating_points.json" if thresholds else "the shipped table"
    (config.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (config.output / "report.md").write_text(markdown(summaries), encoding="utf-8")
    return summaries
