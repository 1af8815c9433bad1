"""Pixel-derived size and HU features (+ the CNNs) against the diameter baseline: chosen on validation, tested once.

Each VOI of the training and validation splits is segmented by the shipped ``resunet3d`` (the
pipeline's inference with the settings the published features were measured with:
:data:`FEATURE_MASK`); from that mask, i.e. from pixels only,
come the nodule's size (log volume, axial long and short axis) and its HU profile (mean, standard
deviation, fraction above 200 HU), its shape and margin (sphericity, solidity, elongation,
flatness, surface roughness, HU step and gradient across the margin); the two malignancy CNNs
add their logits. L2-regularised logistic regressions on six feature sets are scored on the
validation split two ways: fitted on the training split, and by 5-fold cross-validation within the
validation split (the CNNs' training-split outputs are over-confident, which the second way avoids).
Output: a JSON with every validation AUC, next to the validation AUC of the diameter baseline
(``diameter_mm``, the readers' measurement) and of the shipped ensemble.

With ``--test SET`` the named feature set (the one chosen on validation), fitted on the training
split, is scored once on the test split: ROC AUC with its bootstrap CI, the AUC within 8-20 mm,
and the paired bootstrap CI of its difference from the diameter baseline, as ``lungai evaluate
malignancy`` reports them. Features are cached in ``--cache`` (an ``.npz``) between runs.

Usage::

    python benchmarks/malignancy_size_features.py --data ../shared/data/lidc_vois --out runs/eval/val_size_features.json
    python benchmarks/malignancy_size_features.py --data ../shared/data/lidc_vois --out runs/eval/test_size_hu.json \\
        --test "size + HU"
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, optimize, spatial
from scipy.special import expit, logit
from skimage import measure

from lungai.data.lidc_vois import VOICase
from lungai.evaluation.baselines import DiameterLogistic
from lungai.evaluation.cases import evaluation_cases, reference_cases
from lungai.evaluation.malignancy_eval import paired_auc_difference
from lungai.evaluation.metrics import roc_auc, roc_auc_ci
from lungai.evaluation.predictions import load_nodule_model, malignancy_probabilities, roi_dataset
from lungai.inference.voi_segmentation import VoiInference, predict_voi_probability
from lungai.preprocessing.measurements import axial_diameters, largest_component
from lungai.preprocessing.roi import roi_spec
from lungai.weights.resolver import resolve

logger = logging.getLogger("malignancy_size_features")
RULE = "ge2_readers_gt3"
FEATURE_SETS = {
    "size": ("log_volume", "long_axis", "short_axis"),
    "size + HU": ("log_volume", "long_axis", "short_axis", "mean_hu", "calcified_fraction", "hu_sd"),
    "size + CNNs": ("log_volume", "long_axis", "short_axis", "resnet50_3d", "nodule_cnn2d"),
    "size + HU + CNNs": ("log_volume", "long_axis", "short_axis", "mean_hu", "calcified_fraction", "hu_sd",
                         "resnet50_3d", "nodule_cnn2d"),
    "size + HU + shape": ("log_volume", "long_axis", "short_axis", "mean_hu", "calcified_fraction", "hu_sd",
                          "sphericity", "solidity", "elongation", "flatness", "radial_cv", "margin_contrast",
                          "margin_gradient"),
    "size + shape": ("log_volume", "long_axis", "short_axis", "sphericity", "solidity", "elongation", "flatness",
                     "radial_cv", "margin_contrast", "margin_gradient"),
}
SHAPE_FEATURES = ("sphericity", "solidity", "elongation", "flatness", "radial_cv", "margin_contrast",
                  "margin_gradient")
MARGIN_MM = 1.5  # thickness of the inner and outer shells of the margin contrast
#: The mask the published features were measured on: the shipped resunet3d's validation-chosen
#: threshold of the time (0.40), the trained ROI spacing alone, no mirroring (to save time).
FEATURE_MASK = VoiInference(threshold=0.40, mirror=False, scales=(1.0,))


def _features(cases: list[VOICase]) -> dict[str, np.ndarray]:
    """Pixel-derived features of every case (see the module docstring)."""
    folder = resolve("resunet3d").folder
    _, segmenter = load_nodule_model(folder)
    spec = roi_spec("resunet3d")
    inference = FEATURE_MASK
    rows, shape_rows = [], []
    for case in cases:
        sample = case.load()
        mask = largest_component(predict_voi_probability(segmenter, sample.image, sample.spacing_zyx, spec, inference)
                                 >= inference.threshold).astype(bool)
        shape_rows.append(_shape(mask, sample.image, sample.spacing_zyx))
        if not mask.any():
            rows.append((0.0, 0.0, 0.0, -1000.0, 0.0, 0.0))
            continue
        diameters = axial_diameters(mask, sample.spacing_zyx)
        hu = sample.image[mask]
        rows.append((float(mask.sum() * np.prod(sample.spacing_zyx)), diameters.long_axis_mm, diameters.short_axis_mm,
                     float(hu.mean()), float((hu > 200).mean()), float(hu.std())))
    table = np.array(rows)
    features = {"log_volume": np.log1p(table[:, 0]), "long_axis": table[:, 1], "short_axis": table[:, 2],
                "mean_hu": table[:, 3], "calcified_fraction": table[:, 4], "hu_sd": table[:, 5]}
    shapes = np.array(shape_rows)
    features.update({name: shapes[:, i] for i, name in enumerate(SHAPE_FEATURES)})
    for name in ("resnet50_3d", "nodule_cnn2d"):
        _, model = load_nodule_model(resolve(name).folder)
        probability = malignancy_probabilities(model, roi_dataset(cases, name, "malignancy", RULE))
        features[name] = logit(np.clip(probability, 1e-4, 1 - 1e-4))
    return features


def _shape(mask: np.ndarray, image: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, ...]:
    """Shape and margin of a mask: what readers call round, lobulated, spiculated or ill-defined.

    Sphericity (of the marching-cubes surface), solidity (volume over convex hull volume),
    elongation and flatness (square roots of the principal-axis variance ratios), the coefficient
    of variation of the surface's distance from the centroid, the HU step across the margin
    (outer minus inner shell, ``MARGIN_MM`` thick) and the mean HU gradient on the boundary.
    """
    if mask.sum() < 8:
        return (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    spacing_arr = np.asarray(spacing, float)
    padded = np.pad(mask, 1).astype(np.float32)
    vertices, faces, _, _ = measure.marching_cubes(padded, 0.5, spacing=tuple(spacing_arr))
    volume = float(mask.sum() * spacing_arr.prod())
    area = measure.mesh_surface_area(vertices, faces)
    sphericity = float(np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area) if area > 0 else 1.0
    try:
        solidity = min(1.0, volume / spatial.ConvexHull(vertices).volume)
    except spatial.QhullError:  # a flat mask
        solidity = 1.0
    points = np.argwhere(mask) * spacing_arr
    variances = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1].clip(1e-9)
    radii = np.linalg.norm(vertices - (points.mean(0) + spacing_arr), axis=1)  # the pad shifts the mesh
    shell = np.maximum(1, np.round(MARGIN_MM / spacing_arr).astype(int))
    structure = ndimage.generate_binary_structure(3, 1)
    outer = ndimage.binary_dilation(mask, structure, iterations=int(shell.max())) & ~mask
    inner = mask & ~ndimage.binary_erosion(mask, structure, iterations=int(shell.max()))
    contrast = float(image[outer].mean() - image[inner].mean()) if outer.any() and inner.any() else 0.0
    gradient = np.linalg.norm(np.stack(np.gradient(image.astype(np.float32), *spacing_arr)), axis=0)
    boundary = mask & ~ndimage.binary_erosion(mask, structure)
    return (sphericity, float(solidity), float(np.sqrt(variances[1] / variances[0])),
            float(np.sqrt(variances[2] / variances[0])), float(radii.std() / radii.mean()), contrast,
            float(gradient[boundary].mean()))


def _fit(x: np.ndarray, y: np.ndarray, penalty: float = 1.0):
    """L2-regularised logistic regression on standardised features; returns a scoring function."""
    mean, sd = x.mean(0), x.std(0) + 1e-9
    design = np.c_[np.ones(len(x)), (x - mean) / sd]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        grad = design.T @ (expit(z) - y)
        grad[1:] += penalty * w[1:]
        return float(np.sum(np.logaddexp(0, z) - y * z) + 0.5 * penalty * np.sum(w[1:] ** 2)), grad

    w = optimize.minimize(loss, np.zeros(design.shape[1]), jac=True, method="BFGS").x
    return lambda new: expit(np.c_[np.ones(len(new)), (new - mean) / sd] @ w)


def _cross_validated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(y))
    scores = np.zeros(len(y))
    for held in np.array_split(order, folds):
        kept = np.setdiff1d(order, held)
        scores[held] = _fit(x[kept], y[kept])(x[held])
    return scores


def _cached_features(cases: dict[str, list[VOICase]], cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Features per split, computed once and kept in ``cache`` (keyed by the case ids)."""
    stored = dict(np.load(cache, allow_pickle=False)) if cache.is_file() else {}
    out: dict[str, dict[str, np.ndarray]] = {}
    for part, items in cases.items():
        ids = np.array([c.case_id for c in items])
        complete = all(f"{part}/{name}" in stored for name in SHAPE_FEATURES)
        if complete and f"{part}/ids" in stored and np.array_equal(stored[f"{part}/ids"], ids):
            out[part] = {k.split("/", 1)[1]: v for k, v in stored.items()
                         if k.startswith(f"{part}/") and k != f"{part}/ids"}
            continue
        out[part] = _features(items)
        stored.update({f"{part}/{k}": v for k, v in out[part].items()})
        stored[f"{part}/ids"] = ids
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **stored)
    return out


def _test_report(name: str, x: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                 diameters: dict[str, np.ndarray]) -> dict[str, object]:
    """The chosen feature set, fitted on the training split, scored once on the test split."""
    scores = _fit(x["train"], labels["train"])(x["test"])
    baseline = DiameterLogistic.fit(diameters["train"], labels["train"]).predict(diameters["test"])
    y = labels["test"]
    band = (diameters["test"] >= 8) & (diameters["test"] <= 20)
    ci, baseline_ci = roc_auc_ci(scores, y, 2000, seed=0), roc_auc_ci(baseline, y, 2000, seed=0)
    return {"split": "test", "feature_set": name, "n": int(y.size), "n_malignant": int(y.sum()),
            "auc": ci.auc, "auc_ci_low": ci.low, "auc_ci_high": ci.high,
            "auc_8_20mm": roc_auc(scores[band], y[band]), "n_8_20mm": int(band.sum()),
            "auc_diameter_baseline": baseline_ci.auc, "auc_8_20mm_diameter_baseline": roc_auc(baseline[band], y[band]),
            "auc_difference": paired_auc_difference(scores, baseline, y, 2000, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/eval/size_features_cache.npz"))
    parser.add_argument("--test", choices=list(FEATURE_SETS), default=None,
                        help="score this feature set once on the test split")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    parts = {p: [c for c in reference_cases(args.data, p) if c.label(RULE) is not None] for p in ("train", "val")}
    if args.test:
        parts["test"] = [c for c in evaluation_cases(args.data, "test") if c.label(RULE) is not None]
    labels = {p: np.array([c.label(RULE) for c in cases], float) for p, cases in parts.items()}
    features = _cached_features(parts, args.cache)
    diameters = {p: np.array([c.diameter_mm for c in cases]) for p, cases in parts.items()}
    if args.test:
        x = {p: np.stack([features[p][c] for c in FEATURE_SETS[args.test]], axis=1) for p in parts}
        result = _test_report(args.test, x, labels, diameters)
    else:
        result = _validation_report(features, labels, diameters)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    logger.info("wrote %s", args.out)


def _validation_report(features: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray],
                       diameters: dict[str, np.ndarray]) -> dict[str, object]:
    """Every feature set on the validation split (fitted on train, and 5-fold within validation)."""
    band = (diameters["val"] >= 8) & (diameters["val"] <= 20)
    baseline = DiameterLogistic.fit(diameters["train"], labels["train"]).predict(diameters["val"])
    ensemble = np.mean([expit(features["val"][n]) for n in ("resnet50_3d", "nodule_cnn2d")], axis=0)
    result: dict[str, object] = {
        "split": "val", "n": int(labels["val"].size), "n_malignant": int(labels["val"].sum()),
        "diameter_baseline_auc": roc_auc(baseline, labels["val"]),
        "diameter_baseline_auc_8_20mm": roc_auc(baseline[band], labels["val"][band]),
        "ensemble_auc": roc_auc(ensemble, labels["val"]), "feature_sets": {}}
    for name, columns in FEATURE_SETS.items():
        x = {p: np.stack([features[p][c] for c in columns], axis=1) for p in ("train", "val")}
        fitted = _fit(x["train"], labels["train"])(x["val"])
        result["feature_sets"][name] = {  # type: ignore[index]
            "columns": list(columns), "auc_fit_on_train": roc_auc(fitted, labels["val"]),
            "auc_8_20mm_fit_on_train": roc_auc(fitted[band], labels["val"][band]),
            "auc_5fold_within_val": roc_auc(_cross_validated(x["val"], labels["val"]), labels["val"])}
    return result


if __name__ == "__main__":
    main()
