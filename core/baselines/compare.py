"""Score LungAI models and nnU-Net predictions on the same cases: Dice per case and in total, time, memory.

A method is either a LungAI checkpoint folder (``config.json`` + ``model.safetensors``), whose
masks are written by :mod:`lungai.baselines.lungai_predict` in a measured child process, or a
folder of ``<case_id>.nii.gz`` predictions written by ``lungai baseline nnunet predict`` (its
``lungai_timing.json`` gives the time and peak memory). Every method is scored on the same
cases, on each VOI's native grid, against the reader-consensus mask, with the metrics of
``lungai evaluate`` (Dice, precision, recall; mean, median and by size at 10 mm). The first
method is the reference: each other method's per-case Dice is compared with it by a two-sided
Wilcoxon signed-rank test. Time per case is the whole prediction run's wall time (start-up and
model loading included) divided by the number of cases, the same for every method.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from lungai.baselines.process import run_measured
from lungai.data.lidc_vois import VOICase
from lungai.errors import ExternalToolError, InputNotFoundError, UnreadableInputError
from lungai.evaluation.cases import evaluation_cases
from lungai.evaluation.metrics import dice, precision, recall
from lungai.evaluation.predictions import nodule_model_name
from lungai.evaluation.segmentation_eval import SIZE_SPLIT_MM, checkpoint_inference
from lungai.io.volume_arrays import read_array

logger = logging.getLogger(__name__)

TIMING_FILE = "lungai_timing.json"
ALPHA = 0.05


@dataclass(frozen=True)
class CompareConfig:
    """One comparison.

    Attributes:
        methods: checkpoint folders or prediction folders; the first is the reference of the paired tests.
        data: folder laid out like ``lidc_vois/``.
        output: folder for ``compare.json``, ``compare.md``, ``cases.csv`` and LungAI's masks.
        split: ``test``, ``val`` or ``all``.
        device: where LungAI models run.
        threads: torch / BLAS threads of LungAI's prediction process.
    """

    methods: tuple[Path, ...]
    data: Path
    output: Path
    split: str = "test"
    device: str = "cpu"
    threads: int = 1


@dataclass(frozen=True)
class MethodRun:
    """Predictions of one method and what making them cost.

    Attributes:
        name: shown in the tables.
        source: the folder given on the command line.
        predictions: the folder of ``<case_id>.nii.gz``.
        seconds: wall time of the whole prediction run (``None`` when unknown).
        peak_rss_mb: its peak resident memory (``None`` when unknown).
        n_cases: cases in that run.
        inference: a checkpoint's mask threshold, scales and tile mirroring (``None`` for ready predictions).
    """

    name: str
    source: Path
    predictions: Path
    seconds: float | None
    peak_rss_mb: float | None
    n_cases: int
    inference: dict[str, Any] | None = None


def is_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` is a LungAI checkpoint (rather than a folder of predictions)."""
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _lungai_run(folder: Path, config: CompareConfig, n_cases: int, index: int) -> MethodRun:
    out = config.output / "predictions" / f"{index}_{folder.name}"
    command = [sys.executable, "-m", "lungai.baselines.lungai_predict", "--weights", str(folder), "--data",
               str(config.data), "--split", config.split, "--output", str(out), "--device", config.device]
    env = dict(os.environ, OMP_NUM_THREADS=str(config.threads), MKL_NUM_THREADS=str(config.threads))
    log = config.output / "logs" / f"{index}_{folder.name}.log"
    measured = run_measured(command, log, env)
    if measured.returncode != 0:
        raise ExternalToolError(f"LungAI prediction with {folder} failed (status {measured.returncode})",
                                f"see {log}")
    inference = checkpoint_inference(folder)
    return MethodRun(f"LungAI {nodule_model_name(folder)}", folder, out, measured.seconds, measured.peak_rss_mb,
                     n_cases, {"threshold": inference.threshold, "scales": list(inference.scales),
                               "tile_mirror": inference.tile_mirror})


def _prediction_run(folder: Path) -> MethodRun:
    timing_path = folder / TIMING_FILE
    timing: dict[str, Any] = json.loads(timing_path.read_text(encoding="utf-8")) if timing_path.is_file() else {}
    if not timing:
        logger.warning("%s has no %s: time and memory are not reported", folder, TIMING_FILE)
    return MethodRun(str(timing.get("method", folder.name)), folder, folder, timing.get("seconds"),
                     timing.get("peak_rss_mb"), int(timing.get("n_cases", 0)))


def method_run(folder: Path, config: CompareConfig, n_cases: int, index: int) -> MethodRun:
    """Predictions (made now for a checkpoint) and their cost for one method.

    Raises:
        InputNotFoundError: ``folder`` is neither a checkpoint nor holds ``.nii.gz`` predictions.
    """
    if is_checkpoint(folder):
        return _lungai_run(folder, config, n_cases, index)
    if any(folder.glob("*.nii.gz")):
        return _prediction_run(folder)
    raise InputNotFoundError(f"{folder} is neither a LungAI checkpoint nor a folder of <case>.nii.gz predictions",
                             "pass a checkpoint folder or the -o folder of `lungai baseline nnunet predict`")


def score_case(case: VOICase, predictions: Path) -> dict[str, Any]:
    """Dice, precision and recall of one case's prediction against its reference mask.

    Raises:
        InputNotFoundError: the prediction file is missing.
        UnreadableInputError: it is not on the VOI's grid.
    """
    path = predictions / f"{case.case_id}.nii.gz"
    if not path.is_file():
        raise InputNotFoundError(f"{path} is missing", f"predict every {case.case_id}-like case of the split")
    reference = case.load().mask
    predicted = (read_array(path, np.uint8).array > 0).astype(np.uint8)
    if predicted.shape != reference.shape:
        raise UnreadableInputError(f"{path} has shape {predicted.shape}, the VOI {reference.shape}",
                                   "predict on the exported images, which keep each VOI's grid")
    return {"dice": dice(predicted, reference), "precision": precision(predicted, reference),
            "recall": recall(predicted, reference)}


def summarize(rows: Sequence[dict[str, float]], diameters: np.ndarray) -> dict[str, float | None]:
    """Mean and median Dice, Dice below / from 10 mm, mean precision and recall."""
    values = {key: np.array([r[key] for r in rows], dtype=float) for key in ("dice", "precision", "recall")}

    def mean(array: np.ndarray) -> float | None:
        return float(array.mean()) if array.size else None

    return {"dice": mean(values["dice"]), "dice_median": float(np.median(values["dice"])),
            "dice_lt10mm": mean(values["dice"][diameters < SIZE_SPLIT_MM]),
            "dice_ge10mm": mean(values["dice"][diameters >= SIZE_SPLIT_MM]),
            "precision": mean(values["precision"]), "recall": mean(values["recall"])}


def paired_test(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of per-case Dice (``other - reference``)."""
    difference = other - reference
    result: dict[str, Any] = {"n": int(difference.size), "mean_difference": float(difference.mean()),
                              "median_difference": float(np.median(difference)), "statistic": None, "p_value": None}
    if np.any(difference != 0):
        test = stats.wilcoxon(other, reference)
        result.update(statistic=float(test.statistic), p_value=float(test.pvalue))
    return result


def compare_methods(config: CompareConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the comparison (see the module docstring).

    Returns:
        ``(results, per-case rows)``: results hold ``methods`` (summary, time, memory per method)
        and ``paired_tests`` (each method against the first).
    """
    cases = evaluation_cases(config.data, config.split)
    diameters = np.array([c.diameter_mm for c in cases])
    runs = [method_run(folder, config, len(cases), i) for i, folder in enumerate(config.methods)]
    scores = [[score_case(case, run.predictions) for case in cases] for run in runs]
    methods = []
    for run, rows in zip(runs, scores):
        n = run.n_cases or len(cases)
        methods.append({"name": run.name, "source": str(run.source), "n_cases": len(rows),
                        **summarize(rows, diameters), "seconds_total": run.seconds,
                        "seconds_per_case": None if run.seconds is None else run.seconds / n,
                        "peak_rss_mb": run.peak_rss_mb, "inference": run.inference})
    dices = [np.array([r["dice"] for r in rows]) for rows in scores]
    tests = [{"reference": runs[0].name, "other": run.name, **paired_test(dices[0], d)}
             for run, d in zip(runs[1:], dices[1:])]
    results = {"task": "nodule-seg", "split": config.split, "n_cases": len(cases),
               "n_lt10mm": int((diameters < SIZE_SPLIT_MM).sum()), "alpha": ALPHA, "methods": methods,
               "paired_tests": tests}
    case_rows = [{"case_id": case.case_id, "diameter_mm": case.diameter_mm,
                  **{f"{run.name}:{key}": scores[i][j][key] for i, run in enumerate(runs)
                     for key in ("dice", "precision", "recall")}} for j, case in enumerate(cases)]
    return results, case_rows
