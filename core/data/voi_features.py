"""Measured nodule features of LIDC VOIs, from LungAI's own segmentation, cached on disk.

Training and evaluation of the measured scorer (:mod:`lungai.pipeline.measured_scorer`) read
the features ``lungai run`` computes: each VOI is segmented by the installed ``resunet3d``
exactly as the pipeline segments a detection (its recorded threshold, mirroring, tiles and
scales: :func:`lungai.inference.voi_segmentation.recorded_inference`), the largest component
is kept, and :func:`lungai.preprocessing.nodule_features.nodule_features` measures it. The
reader masks, ratings and diameters are never read. A VOI whose predicted mask is empty gets
the features of its central voxel alone (a 1-voxel mask), so it stays in every split.

Segmenting the 779 VOIs takes tens of CPU minutes, so the features are cached in an ``.npz``
(:func:`cache_path`, named after the segmenter's sha256 and the feature list; entries keyed by
:func:`cache_key`, the case id and its image file's size, so another data set's VOI of the same
name is measured afresh) and written every :data:`CHECKPOINT_EVERY` cases: an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lungai.data.lidc_vois import VOICase
from lungai.inference.voi_segmentation import VoiInference, predict_voi_probability, recorded_inference
from lungai.models.checkpoint import load_model, read_header
from lungai.preprocessing.measurements import largest_component
from lungai.preprocessing.nodule_features import FEATURE_NAMES, feature_vector, nodule_features
from lungai.preprocessing.roi import roi_spec
from lungai.weights.resolver import resolve

logger = logging.getLogger(__name__)

SEGMENTER = "resunet3d"
#: Cases between two writes of the cache.
CHECKPOINT_EVERY = 20
#: Where caches go unless ``$LUNGAI_FEATURE_CACHE`` names a folder (``runs/`` is not committed).
DEFAULT_CACHE_DIR = Path("runs/features")


def cache_path(segmenter_sha256: str, folder: Path | None = None) -> Path:
    """The cache file of one segmenter and the current feature list."""
    folder = folder or Path(os.environ.get("LUNGAI_FEATURE_CACHE", DEFAULT_CACHE_DIR))
    names = hashlib.sha256(",".join(FEATURE_NAMES).encode()).hexdigest()[:8]
    return folder / f"measured_{segmenter_sha256[:12]}_{names}.npz"


def cache_key(case: VOICase) -> str:
    """The cache entry of a case: its id and its image file's size in bytes."""
    return f"{case.case_id}:{case.image_path.stat().st_size}"


def voi_feature_row(case: VOICase, segmenter: object, inference: VoiInference) -> np.ndarray:
    """The features of one VOI (see the module docstring)."""
    sample = case.load()
    probability = predict_voi_probability(segmenter, sample.image, sample.spacing_zyx,  # type: ignore[arg-type]  # an nn.Module from load_model
                                          roi_spec(SEGMENTER), inference)
    return feature_vector(nodule_features(sample.image, voi_mask(probability, inference.threshold), sample.spacing_zyx))


def voi_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """The largest component of ``probability >= threshold``; the central voxel alone when it is empty."""
    mask = largest_component(probability >= threshold).astype(bool)
    if not mask.any():
        mask[tuple(n // 2 for n in mask.shape)] = True
    return mask


def voi_features(cases: Sequence[VOICase], cache_dir: Path | None = None) -> np.ndarray:
    """The ``(len(cases), len(FEATURE_NAMES))`` features of ``cases``, from the cache where it has them.

    Raises:
        WeightsError: the segmenter's weights are missing or fail verification (exit code 10).
    """
    resolved = resolve(SEGMENTER)
    path = cache_path(resolved.entry.sha256, cache_dir)
    stored = _read_cache(path)
    missing = [case for case in cases if cache_key(case) not in stored]
    if missing:
        logger.info("measuring %d VOIs (%d cached in %s)", len(missing), len(stored), path)
        segmenter = load_model(resolved.folder)
        inference = recorded_inference(read_header(resolved.folder).get("inference") or {})
        for done, case in enumerate(missing, start=1):
            stored[cache_key(case)] = voi_feature_row(case, segmenter, inference)
            if done % CHECKPOINT_EVERY == 0 or done == len(missing):
                _write_cache(path, stored)
                logger.info("measured %d of %d VOIs", done, len(missing))
    return np.stack([stored[cache_key(case)] for case in cases]) if cases else np.zeros((0, len(FEATURE_NAMES)))


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        if tuple(data["features"]) != FEATURE_NAMES:
            return {}
        return dict(zip((str(i) for i in data["ids"]), data["values"]))


def _write_cache(path: Path, rows: dict[str, np.ndarray]) -> None:
    """Write atomically: a killed run leaves the previous cache intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, ids=np.array(list(rows)), values=np.stack(list(rows.values())),
             features=np.array(FEATURE_NAMES))
    partial.replace(path)
