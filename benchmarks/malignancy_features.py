"""Candidate measured features for the malignancy scorer, compared on the validation split only.

Each training and validation VOI is segmented once by the installed ``resunet3d`` exactly as
``lungai run`` segments a detection (:func:`lungai.inference.voi_segmentation.recorded_inference`)
and its probability map is cached (``--cache``, default ``runs/features/probabilities``; about
1 s per VOI on one thread). Then, per VOI, the shipped features
(:func:`lungai.preprocessing.nodule_features.nodule_features` on the thresholded largest
component) and candidate extra features (:func:`extra_features`) are measured, a logistic
regression is fitted on the training split for every feature set and scored on the validation
split: ROC AUC overall and within 8-20 mm (readers' diameter, an analysis variable only), against
the diameter-only baseline on the same nodules. The shipped form (L2 penalty 1) is compared with
other penalties and with gradient-boosted trees on the same features. The test split is never read.

Usage::

    python benchmarks/malignancy_features.py --data ../shared/data/lidc_vois [--cache DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier

from lungai.data.lidc_vois import VOICase, VOISample
from lungai.data.voi_features import SEGMENTER, voi_mask
from lungai.evaluation.baselines import DiameterLogistic
from lungai.evaluation.cases import reference_cases
from lungai.evaluation.logistic import fit_logistic
from lungai.evaluation.malignancy_eval import BAND_MM
from lungai.evaluation.metrics import roc_auc
from lungai.inference.voi_segmentation import predict_voi_probability, recorded_inference
from lungai.models.checkpoint import load_model, read_header
from lungai.preprocessing.measurements import axial_diameters
from lungai.preprocessing.nodule_features import FEATURE_NAMES, feature_vector, nodule_features
from lungai.preprocessing.roi import roi_spec
from lungai.training.measured import FEATURE_SETS, HU, SIZE
from lungai.weights.resolver import resolve

logger = logging.getLogger("malignancy_features")
LABEL_RULE = "ge2_readers_gt3"
PENALTIES = (0.1, 3.0, 10.0, 30.0)
EXTRA_NAMES = ("soft_log_volume", "log_mass", "long_axis_p03", "long_axis_p07", "max_3d_diameter",
               "log_volume_p03", "log_volume_p07")


def probability_map(case: VOICase, sample: VOISample, cache: Path, segmenter: object, inference: object) -> np.ndarray:
    """The segmenter's probability on the VOI (``sample``, the case loaded), from the cache when it is there."""
    path = cache / f"{case.case_id}.npy"
    if path.is_file():
        return np.load(path).astype(np.float32)
    probability = predict_voi_probability(segmenter, sample.image, sample.spacing_zyx,  # type: ignore[arg-type]
                                          roi_spec(SEGMENTER), inference)  # type: ignore[arg-type]
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, probability.astype(np.float16))
    return probability.astype(np.float16).astype(np.float32)  # as a rerun reads it back


def extra_features(hu: np.ndarray, probability: np.ndarray, spacing: tuple[float, float, float],
                   threshold: float) -> np.ndarray:
    """Soft volume, mass, sizes at other thresholds and the 3D maximum diameter."""
    voxel = float(np.prod(spacing))
    mask = voi_mask(probability, threshold)
    # the probability mass of the component grown by 2 voxels: a threshold-free volume
    grown = ndimage.binary_dilation(mask, iterations=2)
    soft = float(probability[grown].sum() * voxel)
    density = np.clip((hu.astype(np.float32) + 1000.0) / 1000.0, 0.0, 2.0)
    mass = float((probability * density)[grown].sum() * voxel)
    low, high = voi_mask(probability, 0.3), voi_mask(probability, 0.7)
    points = np.argwhere(mask) * np.asarray(spacing)
    if len(points) > 2000:
        points = points[np.random.default_rng(0).choice(len(points), 2000, replace=False)]
    span = float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max()) if len(points) > 1 else min(spacing)
    return np.array([math.log1p(soft), math.log1p(mass), axial_diameters(low, spacing).long_axis_mm,
                     axial_diameters(high, spacing).long_axis_mm, span,
                     math.log1p(low.sum() * voxel), math.log1p(high.sum() * voxel)])


def measure(cases: list[VOICase], cache: Path) -> np.ndarray:
    """Shipped + extra features of every case."""
    resolved = resolve(SEGMENTER)
    segmenter = load_model(resolved.folder)
    inference = recorded_inference(read_header(resolved.folder).get("inference") or {})
    rows = []
    for done, case in enumerate(cases, start=1):
        sample = case.load()
        probability = probability_map(case, sample, cache, segmenter, inference)
        mask = voi_mask(probability, inference.threshold)
        shipped = feature_vector(nodule_features(sample.image, mask, sample.spacing_zyx))
        rows.append(np.concatenate([shipped, extra_features(sample.image, probability, sample.spacing_zyx,
                                                            inference.threshold)]))
        if done % 50 == 0:
            logger.info("measured %d of %d", done, len(cases))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/features/probabilities"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    names = FEATURE_NAMES + EXTRA_NAMES
    parts = {p: [c for c in reference_cases(args.data, p) if c.label(LABEL_RULE) is not None] for p in ("train", "val")}
    x = {p: measure(items, args.cache) for p, items in parts.items()}
    y = {p: np.array([c.label(LABEL_RULE) for c in items], int) for p, items in parts.items()}
    diameter = {p: np.array([c.diameter_mm for c in items]) for p, items in parts.items()}
    band = (diameter["val"] >= BAND_MM[0]) & (diameter["val"] <= BAND_MM[1])
    baseline = DiameterLogistic.fit(list(diameter["train"]), y["train"]).predict(diameter["val"])
    print(f"validation: {len(y['val'])} nodules ({y['val'].sum()} suspicious), 8-20 mm: {band.sum()} "
          f"({y['val'][band].sum()}); diameter alone AUC {roc_auc(baseline, y['val']):.3f}, "
          f"8-20 mm {roc_auc(baseline[band], y['val'][band]):.3f}")
    sets = {**FEATURE_SETS,
            "soft size": ("soft_log_volume", "long_axis", "short_axis"),
            "soft size + HU": ("soft_log_volume", "long_axis", "short_axis") + HU,
            "size + mass": SIZE + ("log_mass",),
            "size + mass + HU": SIZE + ("log_mass",) + HU,
            "multi-threshold size": SIZE + ("long_axis_p03", "long_axis_p07", "log_volume_p03", "log_volume_p07"),
            "multi-threshold size + HU": SIZE + ("long_axis_p03", "long_axis_p07", "log_volume_p03",
                                                 "log_volume_p07") + HU,
            "size + 3D diameter + HU": SIZE + ("max_3d_diameter",) + HU,
            "all extra + HU": SIZE + EXTRA_NAMES + HU}
    def row(label: str, p: np.ndarray) -> None:
        print(f"| {label} | {roc_auc(p, y['val']):.3f} | {roc_auc(p[band], y['val'][band]):.3f} |")

    print("| scorer (fitted on training) | validation AUC | 8-20 mm |\n|---|---|---|")
    for name, chosen in sets.items():
        index = [names.index(n) for n in chosen]
        row(f"logistic, {name}", fit_logistic(x["train"][:, index], y["train"], 2).predict(x["val"][:, index]))
    for name in ("size + HU", "size + HU + shape"):
        index = [names.index(n) for n in sets[name]]
        for penalty in PENALTIES:
            row(f"logistic, {name}, penalty {penalty:g}",
                fit_logistic(x["train"][:, index], y["train"], 2, penalty).predict(x["val"][:, index]))
        for depth in (2, 3):
            boosted = HistGradientBoostingClassifier(max_depth=depth, learning_rate=0.05, max_iter=200,
                                                     random_state=0).fit(x["train"][:, index], y["train"])
            row(f"gradient boosting (depth {depth}), {name}", boosted.predict_proba(x["val"][:, index])[:, 1])

if __name__ == "__main__":
    main()
