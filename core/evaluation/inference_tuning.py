"""Choose a segmentation checkpoint's mask threshold and test-time scales on the validation split.

``lungai tune nodule-seg --weights RUN --data lidc_vois`` runs the model on every validation VOI
the way ``lungai evaluate`` and ``lungai run`` do (mirrored, tiled), once at the trained ROI
spacing and once at each candidate factor of it (a factor below 1 magnifies the nodule:
:func:`lungai.inference.voi_segmentation.scaled_spec`). Every set of at most ``max_set_size``
scales that includes the trained spacing is then scored with every threshold of the trainer's
grid (:data:`lungai.evaluation.segmentation_eval.THRESHOLDS`): mean native-grid Dice of the
largest component of the averaged probabilities, the trainer's own criterion. The best pair is
written into the checkpoint's ``config.json`` (``inference.threshold`` and ``inference.scales``),
where evaluation and the pipeline read it; ties go to fewer scales, then to the threshold nearest
0.5. Only validation cases are read: the test split stays untouched.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungai.data.roi import roi_spec
from lungai.evaluation.cases import evaluation_cases
from lungai.evaluation.predictions import load_nodule_model
from lungai.evaluation.segmentation_eval import DEFAULT_THRESHOLD, THRESHOLDS, checkpoint_inference, mean_dice
from lungai.inference.voi_segmentation import MAX_SCALE, VoiInference, predict_voi_probability_at, scaled_spec
from lungai.models.checkpoint import read_header
from lungai.training.checkpointing import write_inference_settings
from lungai.training.recipes import models_for_task

logger = logging.getLogger(__name__)

#: Candidate factors of the ROI spacing searched by default, besides the trained one (1).
DEFAULT_CANDIDATES = (0.7, 0.8, 0.9)
TRAINED_SCALE = 1.0


@dataclass(frozen=True)
class TuningConfig:
    """One tuning run.

    Attributes:
        weights: the segmentation checkpoint folder (rewritten unless ``write`` is false).
        data: a folder laid out like ``lidc_vois`` with validation cases of the committed split.
        candidates: spacing factors tried besides 1.
        max_set_size: most scales averaged together (1 and up to ``max_set_size - 1`` candidates).
        device: where the model runs.
        write: record the choice in ``config.json``.
    """

    weights: Path
    data: Path
    candidates: tuple[float, ...] = DEFAULT_CANDIDATES
    max_set_size: int = 2
    device: str = "cpu"
    write: bool = True

    def __post_init__(self) -> None:
        if any(not 0.0 < c <= MAX_SCALE or c == TRAINED_SCALE for c in self.candidates):
            raise ValueError(f"candidate scales must lie in (0, {MAX_SCALE}] and differ from 1, got {self.candidates}")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidate scales repeat: {self.candidates}")
        if self.max_set_size < 1:
            raise ValueError(f"max_set_size must be at least 1, got {self.max_set_size}")


def scale_sets(candidates: tuple[float, ...], max_set_size: int) -> list[tuple[float, ...]]:
    """Every set of the trained scale plus at most ``max_set_size - 1`` candidates, smallest first."""
    return [(TRAINED_SCALE, *extra) for k in range(min(max_set_size, len(candidates) + 1))
            for extra in itertools.combinations(sorted(candidates), k)]


def best_setting(probabilities: dict[float, list[np.ndarray]], masks: list[np.ndarray],
                 sets: list[tuple[float, ...]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every (scale set, threshold) pair by mean Dice.

    Args:
        probabilities: per scale, the native-grid probabilities of every case.
        masks: the cases' reference masks.
        sets: the scale sets to score.

    Returns:
        ``(the best pair, every pair)``, each a dict of ``scales``, ``threshold`` and ``dice``.
    """
    scored = []
    for scales in sets:
        mean = [np.mean([probabilities[s][i] for s in scales], axis=0) for i in range(len(masks))]
        for threshold in THRESHOLDS:
            scored.append({"scales": list(scales), "threshold": threshold, "dice": mean_dice(mean, masks, threshold)})
    best = max(scored, key=lambda r: (r["dice"], -len(r["scales"]), -abs(r["threshold"] - DEFAULT_THRESHOLD)))
    return best, scored


def tune_inference(config: TuningConfig, on_case: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Choose the threshold and scales on the validation split (see the module docstring).

    Args:
        config: what to tune.
        on_case: called with ``(cases done, cases in all)`` after each validation case.

    Returns:
        The choice (``threshold``, ``scales``, ``val_dice``), the checkpoint's previous setting
        re-scored on the same cases (``previous``) and every scored pair (``candidates``).

    Raises:
        ValueError: no validation cases in ``config.data``, or not a segmentation checkpoint.
    """
    cases = evaluation_cases(config.data, "val")
    name, model = load_nodule_model(config.weights, config.device)
    if name not in models_for_task("nodule-seg"):
        raise ValueError(f"{config.weights} holds {name}, not a nodule segmentation model "
                         f"({', '.join(models_for_task('nodule-seg'))})")
    spec = roi_spec(name)
    previous = checkpoint_inference(config.weights)
    scales = sorted({TRAINED_SCALE, *config.candidates, *previous.scales})
    probabilities: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    masks: list[np.ndarray] = []
    for done, case in enumerate(cases, start=1):
        sample = case.load()
        for scale in scales:
            inference = VoiInference(threshold=previous.threshold, scales=(scale,))
            probabilities[scale].append(predict_voi_probability_at(model, sample.image, sample.spacing_zyx,
                                                                   scaled_spec(spec, scale), inference))
        masks.append(sample.mask)
        if on_case is not None:
            on_case(done, len(cases))
    best, scored = best_setting(probabilities, masks, scale_sets(config.candidates, config.max_set_size))
    previous_mean = [np.mean([probabilities[s][i] for s in previous.scales], axis=0) for i in range(len(masks))]
    result = {"task": "nodule-seg", "model": name, "weights": str(config.weights), "split": "val",
              "n_cases": len(cases), "threshold": best["threshold"], "scales": best["scales"],
              "val_dice": best["dice"],
              "previous": {"threshold": previous.threshold, "scales": list(previous.scales),
                           "val_dice": mean_dice(previous_mean, masks, previous.threshold)},
              "candidates": scored}
    logger.info("%s: threshold %.2f, scales %s, validation Dice %.4f (before: threshold %.2f, scales %s, %.4f)",
                name, best["threshold"], best["scales"], best["dice"], previous.threshold, list(previous.scales),
                result["previous"]["val_dice"])
    if config.write:
        _record(config.weights, best)
    return result


def _record(folder: Path, best: dict[str, Any]) -> None:
    """Write the choice into the checkpoint's ``inference`` block, keeping its other settings."""
    settings = dict(read_header(folder).get("inference") or {})
    settings.update(threshold=best["threshold"], scales=best["scales"],
                    threshold_source="validation split, best mean native-grid Dice over thresholds and "
                                     "test-time scales (lungai tune)")
    write_inference_settings(folder, settings)
