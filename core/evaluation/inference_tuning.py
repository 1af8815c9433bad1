"""Choose a segmentation checkpoint's mask threshold and test-time scales on the validation split.

``lungai tune nodule-seg --weights RUN --data lidc_vois`` runs the model on every validation VOI
the way ``lungai evaluate`` and ``lungai run`` do (mirrored, tiled), once at the trained ROI
spacing and once at each candidate factor of it (a factor below 1 magnifies the nodule:
:func:`lungai.inference.voi_segmentation.scaled_spec`); whether a VOI is tiled depends on the
threshold, so each threshold gets the probabilities it would get in ``lungai evaluate``
(:func:`lungai.inference.voi_segmentation.probabilities_by_threshold`). Every set of at most ``max_set_size``
scales that includes the trained spacing is then scored with every threshold of the trainer's
grid (:data:`lungai.evaluation.segmentation_eval.THRESHOLDS`): mean native-grid Dice of the
largest component of the averaged probabilities, the trainer's own criterion. The best pair is
written into the checkpoint's ``config.json`` (``inference.threshold`` and ``inference.scales``),
where evaluation and the comparison read it (and ``lungai run``, once the run is released:
docs/weights.md); ties go to fewer scales, then to the threshold nearest 0.5. A checkpoint
validated on large nodules only (``inference.min_diameter_mm``, the tumour model) is tuned on
those. Only validation cases are read: the test split stays untouched.

Whether tiles are mirrored (``inference.tile_mirror``) is not scored: it trades accuracy for an
eighth of the tiles' model inputs, a choice for the caller (``--no-tile-mirror``). The threshold
and scales are tuned under that choice, and it is recorded with them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungai.evaluation.cases import evaluation_cases
from lungai.evaluation.predictions import nodule_model_name
from lungai.evaluation.segmentation_eval import DEFAULT_THRESHOLD, THRESHOLDS, mean_dice
from lungai.inference.voi_segmentation import MAX_SCALE, probabilities_by_threshold, recorded_inference, with_overrides
from lungai.models.checkpoint import load_model, read_header, write_inference_settings
from lungai.preprocessing.roi import roi_spec
from lungai.weights.resolver import installed_folders

logger = logging.getLogger(__name__)

#: The models tuned here: those trained for the ``nodule-seg`` task (the training recipes' list;
#: ``tests/evaluation/test_inference_tuning.py`` checks the two agree).
NODULE_SEG_MODELS = ("resunet3d", "convlstm_nodule", "r3d_denseunet")

#: Candidate factors of the ROI spacing searched by default, besides the trained one (1).
DEFAULT_CANDIDATES = (0.7, 0.8, 0.9)
TRAINED_SCALE = 1.0
#: Per ``(scale, threshold)``: the native-grid probabilities of every validation case.
Probabilities = dict[tuple[float, float], list[np.ndarray]]


@dataclass(frozen=True)
class TuningConfig:
    """One tuning run.

    Attributes:
        weights: the segmentation checkpoint folder (a training run, not a released model).
        data: a folder laid out like ``lidc_vois`` with validation cases of the committed split.
        candidates: spacing factors tried besides 1.
        max_set_size: most scales averaged together (1 and up to ``max_set_size - 1`` candidates).
        device: where the model runs.
        tile_mirror: mirror the tiles; ``None`` keeps the checkpoint's setting.
    """

    weights: Path
    data: Path
    candidates: tuple[float, ...] = DEFAULT_CANDIDATES
    max_set_size: int = 2
    device: str = "cpu"
    tile_mirror: bool | None = None

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


def _averaged(probabilities: Probabilities, scales: tuple[float, ...], threshold: float) -> list[np.ndarray]:
    by_scale = [probabilities[(s, threshold)] for s in scales]
    return [np.mean([p[i] for p in by_scale], axis=0) for i in range(len(by_scale[0]))]


def best_setting(probabilities: Probabilities, masks: list[np.ndarray], sets: list[tuple[float, ...]],
                 thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every (scale set, threshold) pair by mean Dice.

    Args:
        probabilities: per ``(scale, threshold)``, the native-grid probabilities of every case as
            that scale makes them with that threshold (:func:`probabilities_by_threshold`).
        masks: the cases' reference masks.
        sets: the scale sets to score.
        thresholds: the thresholds to score.

    Returns:
        ``(the best pair, every pair)``, each a dict of ``scales``, ``threshold`` and ``dice``.
    """
    scored: list[dict[str, Any]] = [
        {"scales": list(scales), "threshold": t, "dice": mean_dice(_averaged(probabilities, scales, t), masks, t)}
        for scales in sets for t in thresholds]
    best = max(scored, key=lambda r: (r["dice"], -len(r["scales"]), -abs(r["threshold"] - DEFAULT_THRESHOLD)))
    return best, scored


def tune_inference(config: TuningConfig, on_case: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Choose the threshold and scales on the validation split (see the module docstring).

    Nothing is written: :func:`record_choice` records the result.

    Args:
        config: what to tune.
        on_case: called with ``(cases done, cases in all)`` after each validation case.

    Returns:
        The choice (``threshold``, ``scales``, ``val_dice``, and the ``tile_mirror`` it was made
        under), the checkpoint's recorded setting (``previous``: threshold, scales, tile_mirror)
        with its threshold and scales re-scored on the same probabilities, and every scored pair
        (``candidates``).

    Raises:
        ValueError: installed (verified) weights, not a segmentation checkpoint, a bad ``inference`` block,
            or no validation cases in ``config.data``.
    """
    name = nodule_model_name(config.weights)
    if name not in NODULE_SEG_MODELS:
        raise ValueError(f"{config.weights} holds {name}, not a nodule segmentation model "
                         f"({', '.join(NODULE_SEG_MODELS)})")
    _refuse_installed(config.weights, name)
    block = read_header(config.weights).get("inference") or {}
    previous = recorded_inference(block, DEFAULT_THRESHOLD)
    run_as = with_overrides(previous, tile_mirror=config.tile_mirror)
    min_diameter = block.get("min_diameter_mm")
    cases = [c for c in evaluation_cases(config.data, "val") if min_diameter is None or c.diameter_mm >= min_diameter]
    if not cases:
        raise ValueError(f"no validation cases with diameter_mm >= {min_diameter} in {config.data}")
    model = load_model(config.weights, config.device)
    spec = roi_spec(name)
    scales = sorted({TRAINED_SCALE, *config.candidates, *previous.scales})
    thresholds = tuple(sorted({*THRESHOLDS, previous.threshold}))
    probabilities: Probabilities = {(s, t): [] for s in scales for t in thresholds}
    masks: list[np.ndarray] = []
    for done, case in enumerate(cases, start=1):
        sample = case.load()
        for scale in scales:
            at_scale = probabilities_by_threshold(model, sample.image, sample.spacing_zyx, spec, scale, run_as,
                                                  thresholds)
            for t, probability in at_scale.items():
                probabilities[(scale, t)].append(probability)
        masks.append(sample.mask)
        if on_case is not None:
            on_case(done, len(cases))
    best, scored = best_setting(probabilities, masks, scale_sets(config.candidates, config.max_set_size))
    before = mean_dice(_averaged(probabilities, previous.scales, previous.threshold), masks, previous.threshold)
    result = {"task": "nodule-seg", "model": name, "weights": str(config.weights), "split": "val",
              "n_cases": len(cases), "min_diameter_mm": min_diameter, "threshold": best["threshold"],
              "scales": best["scales"], "val_dice": best["dice"], "tile_mirror": run_as.tile_mirror,
              "previous": {"threshold": previous.threshold, "scales": list(previous.scales),
                           "tile_mirror": previous.tile_mirror, "val_dice": before},
              "candidates": scored}
    logger.info("%s: threshold %.2f, scales %s, validation Dice %.4f (before: threshold %.2f, scales %s, %.4f)",
                name, best["threshold"], best["scales"], best["dice"], previous.threshold, list(previous.scales),
                before)
    return result


def record_choice(folder: Path, result: dict[str, Any]) -> None:
    """Write a tuning result's threshold, scales and tile mirroring into the checkpoint's
    ``inference`` block, keeping its other settings (the file is replaced atomically)."""
    settings = dict(read_header(folder).get("inference") or {})
    settings.update(threshold=result["threshold"], scales=result["scales"], tile_mirror=result["tile_mirror"],
                    threshold_source="validation split, best mean native-grid Dice over thresholds and "
                                     "test-time scales (lungai tune)")
    write_inference_settings(folder, settings)


def _refuse_installed(folder: Path, name: str) -> None:
    """Refuse a folder the resolver loads a model from: its files are verified by sha256 before
    every use, so tuning it in place would break ``lungai run``; tune the run it came from."""
    if folder.resolve() in {f.resolve() for f in installed_folders(name)}:
        raise ValueError(f"{folder} holds the installed {name} weights, whose files are verified by sha256; "
                         "tune the training run they were released from, then release it again (docs/weights.md)")
