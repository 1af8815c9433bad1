"""Scoring of ``lungai follow-up`` on simulated pairs against their known truth.

Inputs: a pairs folder (``pairs.csv`` and ``<pair_id>/truth.json``, written by
:mod:`lungai.data.follow_up_sim`) and a results folder holding each pair's follow-up output in
``<pair_id>/`` (``follow_up.json`` and ``registration.tfm``, a current -> prior SimpleITK transform).

Method, per pair:

1. **Association.** On each scan, an output entry's finding (its ``prior`` or ``current``
   block) belongs to the nearest truth nodule present on that scan whose centre lies within
   ``max(min_radius_mm, radius_fraction x its mean diameter on that scan)``; otherwise to none.
2. **Matching.** A truth nodule on both scans is *matched correctly* when one output entry of
   status ``matched`` has its prior finding and its current finding both belonging to it. It is
   *found by the detector on both* when some entry's prior finding and some entry's current
   finding belonging to it have ``found_by == "detector"``, *found by the detector once* when
   that holds on at least one scan (the matching's own population: a nodule the detector missed
   on both scans is a detection miss, which no matching can recover; ``overall_match_rate``
   counts it all the same, ``detected_once_match_rate`` does not). A truth ``new`` nodule whose current
   finding, or a truth ``resolved`` nodule whose prior finding, belongs to an entry of status
   ``matched`` is a *wrong match* (it was paired with something that is not it).
3. **Registration residual** of each truth nodule on both scans: ``|T(current centre) - prior
   centre|`` with ``T`` read from ``registration.tfm``.
4. **Volume change** of the correctly matched nodules whose prior mean diameter is at least
   ``min_size_mm``: ``|output % change - true % change|`` in percentage points of the prior
   volume, each ``100 x (V2 - V1) / V1`` (the output's ``growth.volume_change_pct``; from its
   two scans' volumes when it has none).
5. **VDT** of the growing nodules (true ``V2 / V1 >= growing_ratio``) of at least ``min_size_mm``:
   right when the nodule is matched correctly and the output's ``vdt_days`` is within
   ``vdt_tolerance`` of the true one.
6. **Growth flag** (Lung-RADS: mean diameter up by more than ``growth_mm``): a pair is right
   when the output's flag (``growth.lung_rads_growth``; from its two mean diameters when it has
   none) equals the truth's for every truth nodule on both scans (a nodule not matched correctly
   has no output flag: false).

A pair without results (no ``<pair_id>/follow_up.json``) counts with every nodule missed and its
growth flag wrong. Output entries that belong to no truth nodule (detections of real structures,
false positives) and *duplicate* entries (another entry with a finding of a correctly matched
nodule, e.g. a second "new" finding on it) are counted, not scored. Overall numbers pool the nodules of all pairs; the
acceptance targets are :data:`TARGETS`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai.errors import InputNotFoundError, UnreadableInputError

logger = logging.getLogger(__name__)

TRUTH_SCHEMA = "lungai-follow-up-truth"
OUTPUT_SCHEMA = "lungai-follow-up"
EVAL_SCHEMA = "lungai-follow-up-evaluation"
SIDES = ("prior", "current")
SPLITS = ("tune", "test", "all")


@dataclass(frozen=True)
class FollowUpEvalConfig:
    """How outputs are scored.

    Attributes:
        min_radius_mm: smallest association radius.
        radius_fraction: association radius as a fraction of the truth nodule's mean diameter.
        min_size_mm: prior mean diameter from which volume change and VDT are scored.
        growing_ratio: true ``V2 / V1`` from which a nodule counts as growing for the VDT.
        vdt_tolerance: largest relative VDT error that counts as right.
        growth_mm: Lung-RADS growth: mean diameter up by more than this.
    """

    min_radius_mm: float = 5.0
    radius_fraction: float = 0.5
    min_size_mm: float = 6.0
    growing_ratio: float = 1.25
    vdt_tolerance: float = 0.25
    growth_mm: float = 1.5


@dataclass(frozen=True)
class Target:
    """An acceptance target: ``overall[name]`` compared with ``limit`` (``>=`` or ``<=``)."""

    name: str
    op: str
    limit: float
    description: str

    def passed(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (``None``: nothing to measure)."""
        if value is None:
            return None
        return bool(value >= self.limit) if self.op == ">=" else bool(value <= self.limit)


TARGETS: tuple[Target, ...] = (
    Target("both_found_match_rate", ">=", 0.97,
           "matched correctly, nodules on both scans found by the detector on both"),
    Target("new_resolved_wrong_matches", "<=", 0, "wrong matches among truth new and resolved nodules"),
    Target("overall_match_rate", ">=", 0.90, "matched correctly, all nodules on both scans (mapped ones included)"),
    Target("residual_median_mm", "<=", 2.0, "registration residual at nodule centres, median (mm)"),
    Target("residual_p95_mm", "<=", 5.0, "registration residual at nodule centres, 95th percentile (mm)"),
    Target("volume_change_median_error_pct", "<=", 15.0,
           "volume change median absolute error, nodules >= 6 mm (% of prior volume)"),
    Target("vdt_within_25pct_rate", ">=", 0.80, "VDT within 25 % of the truth, growing nodules >= 6 mm"),
    Target("growth_flag_pair_rate", ">=", 0.95, "pairs with every Lung-RADS growth flag right"),
)


# -- reading -------------------------------------------------------------------------------------

def _read_json(path: Path, schema: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(f"cannot read {path} ({exc})", "re-create it") from exc
    if not isinstance(data, dict) or data.get("schema") != schema or not isinstance(data.get("nodules"), list):
        raise UnreadableInputError(f"{path} is not a {schema} file", f"give a file with schema {schema!r}")
    return data


def read_pairs(pairs_dir: Path, split: str) -> list[dict[str, str]]:
    """The rows of ``pairs.csv`` of ``split`` (``tune``, ``test`` or ``all``).

    Raises:
        ValueError: unknown split.
        InputNotFoundError: no ``pairs.csv``.
        UnreadableInputError: it lacks the ``pair_id`` or ``split`` column, or has no pair of ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = Path(pairs_dir) / "pairs.csv"
    if not path.is_file():
        raise InputNotFoundError(f"{path} does not exist", "make the pairs with `lungai data simulate-follow-up`")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"pair_id", "split"} <= set(reader.fieldnames or ()):
            raise UnreadableInputError(f"{path} has no pair_id and split columns", "re-create the pairs")
        rows = [row for row in reader if split == "all" or row["split"] == split]
    if not rows:
        raise UnreadableInputError(f"{path} lists no {split} pair", "choose another --split")
    return rows


def read_result(folder: Path) -> tuple[dict[str, Any], sitk.Transform] | None:
    """A pair's ``follow_up.json`` and ``registration.tfm``; ``None`` when the pair has no results.

    Raises:
        UnreadableInputError: ``follow_up.json`` is malformed, or the transform is missing or unreadable.
    """
    if not (folder / "follow_up.json").is_file():
        return None
    output = _read_json(folder / "follow_up.json", OUTPUT_SCHEMA)
    path = folder / "registration.tfm"
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise UnreadableInputError(f"cannot read the registration transform {path}",
                                   "rerun lungai follow-up for this pair") from exc
    return output, transform


# -- one pair ------------------------------------------------------------------------------------

def _radius(record: Mapping[str, Any], config: FollowUpEvalConfig) -> float:
    return max(config.min_radius_mm, config.radius_fraction * float(record["mean_diameter_mm"]))


def associate(truth: Sequence[Mapping[str, Any]], entries: Sequence[Mapping[str, Any]], side: str,
              config: FollowUpEvalConfig) -> list[str | None]:
    """For each output entry, the id of the truth nodule its ``side`` finding belongs to (or ``None``)."""
    owners: list[str | None] = []
    for entry in entries:
        finding = entry.get(side)
        best: tuple[float, str] | None = None
        for nodule in truth:
            record = nodule.get(side)
            if finding is None or record is None:
                continue
            distance = float(np.linalg.norm(np.subtract(finding["centre_lps_mm"], record["centre_lps_mm"])))
            if distance <= _radius(record, config) and (best is None or distance < best[0]):
                best = (distance, nodule["id"])
        owners.append(best[1] if best else None)
    return owners


def _pct_change(prior_volume: float, current_volume: float) -> float:
    return 100.0 * (current_volume - prior_volume) / max(prior_volume, 1e-6)


def _outcome(nid: str, status: str, entries: Sequence[Mapping[str, Any]], owners: Mapping[str, list[str | None]]
             ) -> str:
    """What the output made of a truth nodule.

    ``correct`` (on both scans: one matched entry holds it on both), ``wrong`` (in a matched
    entry with something else), ``unpaired`` (found but not paired: the right answer for a new or
    resolved nodule) or ``missed`` (no finding belongs to it).
    """
    pairs = [(p, c) for e, p, c in zip(entries, owners["prior"], owners["current"]) if e.get("status") == "matched"]
    if status == "matched" and (nid, nid) in pairs:
        return "correct"
    if any(nid in pair for pair in pairs):
        return "wrong"
    return "unpaired" if nid in owners["prior"] or nid in owners["current"] else "missed"


def _detector_sides(nid: str, entries: Sequence[Mapping[str, Any]], owners: Mapping[str, list[str | None]]
                    ) -> int:
    """On how many of the two scans the detector found the truth nodule ``nid``."""
    return sum(any(o == nid and e[side].get("found_by") == "detector" for e, o in zip(entries, owners[side]))
               for side in SIDES)


def _both_scans(nodule: Mapping[str, Any], entry: Mapping[str, Any] | None, transform: sitk.Transform | None,
                config: FollowUpEvalConfig) -> dict[str, Any]:
    """Residual, volume change error, VDT and growth flag of a truth nodule on both scans."""
    prior, current = nodule["prior"], nodule["current"]
    result: dict[str, Any] = {"residual_mm": None, "volume_change_error_pct": None, "vdt_scored": False,
                              "vdt_ok": None, "growth_flag_truth": bool(nodule["lung_rads_growth"]),
                              "growth_flag_output": False}
    if transform is not None:
        mapped = transform.TransformPoint([float(v) for v in current["centre_lps_mm"]])
        result["residual_mm"] = float(np.linalg.norm(np.subtract(mapped, prior["centre_lps_mm"])))
    large = prior["mean_diameter_mm"] >= config.min_size_mm
    result["vdt_scored"] = large and current["volume_mm3"] >= config.growing_ratio * prior["volume_mm3"]
    if result["vdt_scored"]:
        result["vdt_ok"] = False
    if entry is None:
        return result
    out_prior, out_current, growth = entry["prior"], entry["current"], entry.get("growth") or {}
    if large:
        true_pct = _pct_change(prior["volume_mm3"], current["volume_mm3"])
        out_pct = growth.get("volume_change_pct")
        if out_pct is None:
            out_pct = _pct_change(out_prior["volume_mm3"], out_current["volume_mm3"])
        result["volume_change_error_pct"] = abs(out_pct - true_pct)
    vdt = growth.get("vdt_days")
    if result["vdt_scored"] and vdt is not None and nodule["vdt_days"]:
        result["vdt_ok"] = abs(float(vdt) - nodule["vdt_days"]) <= config.vdt_tolerance * nodule["vdt_days"]
    flag = growth.get("lung_rads_growth")
    if flag is None:
        flag = out_current["mean_diameter_mm"] - out_prior["mean_diameter_mm"] > config.growth_mm
    result["growth_flag_output"] = bool(flag)
    return result


def evaluate_pair(truth: Mapping[str, Any], result: tuple[dict[str, Any], sitk.Transform] | None,
                  config: FollowUpEvalConfig | None = None) -> dict[str, Any]:
    """Score one pair's output (``None``: no results) against its truth.

    Returns:
        ``{"pair_id", "has_results", "nodules": [per truth nodule], "unassociated_entries",
        "duplicate_entries", "growth_flag_right"}``; each nodule carries its ``status``, ``outcome`` and, for
        nodules on both scans, ``found_by_detector_both`` and the measures of :func:`_both_scans`.
    """
    cfg = config or FollowUpEvalConfig()
    output, transform = result if result is not None else ({"nodules": []}, None)
    entries = output["nodules"]
    owners = {side: associate(truth["nodules"], entries, side, cfg) for side in SIDES}
    nodules = []
    for nodule in truth["nodules"]:
        nid = nodule["id"]
        outcome = _outcome(nid, nodule["status"], entries, owners)
        record: dict[str, Any] = {"id": nid, "voi": nodule.get("voi"), "status": nodule["status"], "outcome": outcome}
        if nodule["status"] == "matched":
            entry = next((e for e, p, c in zip(entries, owners["prior"], owners["current"])
                          if e.get("status") == "matched" and p == c == nid), None)
            sides = _detector_sides(nid, entries, owners)
            record["found_by_detector_both"] = sides == 2
            record["found_by_detector_once"] = sides >= 1
            record.update(_both_scans(nodule, entry, transform, cfg))
        nodules.append(record)
    flags = [(n["growth_flag_truth"], n["growth_flag_output"]) for n in nodules if n["status"] == "matched"]
    unassociated = sum(1 for i, e in enumerate(entries)
                       if all(owners[s][i] is None for s in SIDES if e.get(s) is not None))
    correct = {n["id"] for n in nodules if n["outcome"] == "correct"}
    duplicates = sum(1 for e, p, c in zip(entries, owners["prior"], owners["current"])
                     if {p, c} & correct and not (e.get("status") == "matched" and p == c))
    return {"pair_id": truth["pair_id"], "has_results": result is not None, "nodules": nodules,
            "unassociated_entries": unassociated, "duplicate_entries": duplicates,
            "growth_flag_right": result is not None and all(t == o for t, o in flags)}


# -- overall -------------------------------------------------------------------------------------

def _rate(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if hits else None


def summarize(pairs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pooled numbers over the pairs' nodules, with counts."""
    nodules = [n for p in pairs for n in p["nodules"]]
    both = [n for n in nodules if n["status"] == "matched"]
    detector = [n for n in both if n["found_by_detector_both"]]
    residuals = [n["residual_mm"] for n in both if n["residual_mm"] is not None]
    volume_errors = [n["volume_change_error_pct"] for n in both if n["volume_change_error_pct"] is not None]
    vdt = [bool(n["vdt_ok"]) for n in both if n["vdt_scored"]]
    outcomes = {o: sum(1 for n in both if n["outcome"] == o) for o in ("correct", "wrong", "unpaired", "missed")}
    return {
        "num_pairs": len(pairs), "pairs_without_results": [p["pair_id"] for p in pairs if not p["has_results"]],
        "num_nodules_both_scans": len(both), "num_found_by_detector_both": len(detector),
        "num_new": sum(1 for n in nodules if n["status"] == "new"),
        "num_resolved": sum(1 for n in nodules if n["status"] == "resolved"),
        "outcomes_both_scans": outcomes,
        "both_found_match_rate": _rate([n["outcome"] == "correct" for n in detector]),
        "overall_match_rate": _rate([n["outcome"] == "correct" for n in both]),
        "num_found_by_detector_once": sum(1 for n in both if n.get("found_by_detector_once")),
        "detected_once_match_rate": _rate([n["outcome"] == "correct" for n in both if n.get("found_by_detector_once")]),
        "new_resolved_wrong_matches": sum(1 for n in nodules if n["status"] != "matched" and n["outcome"] == "wrong"),
        "residual_median_mm": float(np.median(residuals)) if residuals else None,
        "residual_p95_mm": float(np.percentile(residuals, 95)) if residuals else None,
        "volume_change_median_error_pct": float(np.median(volume_errors)) if volume_errors else None,
        "volume_change_mae_pct": float(np.mean(volume_errors)) if volume_errors else None,
        "num_volume_scored": len(volume_errors),
        "vdt_within_25pct_rate": _rate(vdt), "num_vdt_scored": len(vdt),
        "growth_flag_pair_rate": _rate([bool(p["growth_flag_right"]) for p in pairs]),
        "unassociated_entries": sum(p["unassociated_entries"] for p in pairs),
        "duplicate_entries": sum(p["duplicate_entries"] for p in pairs),
    }


def check_targets(overall: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each :data:`TARGETS` entry with its value and ``passed`` (``None`` where nothing was measured)."""
    return [{"name": t.name, "description": t.description, "value": overall[t.name], "op": t.op, "limit": t.limit,
             "passed": t.passed(overall[t.name])} for t in TARGETS]


def _write_atomically(data: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def evaluate_follow_up(pairs_dir: Path, results_dir: Path, output: Path, split: str = "test",
                       config: FollowUpEvalConfig | None = None) -> dict[str, Any]:
    """Score every pair of ``split`` and write the report to ``output`` (JSON, replaced atomically).

    Returns:
        ``{"schema", "split", "config", "overall", "targets", "pairs"}``.

    Raises:
        InputNotFoundError: no pairs or no results folder.
        UnreadableInputError: a malformed truth or output file.
    """
    cfg = config or FollowUpEvalConfig()
    rows = read_pairs(pairs_dir, split)
    if not Path(results_dir).is_dir():
        raise InputNotFoundError(f"results folder {results_dir} does not exist",
                                 "run lungai follow-up on the pairs first (benchmarks/follow_up_pairs.py)")
    pairs = []
    for row in rows:
        truth = _read_json(Path(pairs_dir) / row["pair_id"] / "truth.json", TRUTH_SCHEMA)
        result = read_result(Path(results_dir) / row["pair_id"])
        if result is None:
            logger.warning("%s has no results in %s", row["pair_id"], results_dir)
        pairs.append(evaluate_pair(truth, result, cfg))
    overall = summarize(pairs)
    report = {"schema": EVAL_SCHEMA, "split": split, "config": cfg.__dict__, "overall": overall,
              "targets": check_targets(overall), "pairs": pairs}
    _write_atomically(report, Path(output))
    return report
