"""Tumour-free training ROIs cut from whole scans, where the tumour stage's false positives lie.

A model trained only on nodule-centred VOIs has never seen a patch without a lesion, and on a
whole scan it marks hilar vessels, chest wall and mediastinum (docs/results.md, "Tumour").
These negatives are ROIs of an unlabelled whole scan with an empty mask, centred on soft tissue
(:data:`SOFT_TISSUE_HU` and more) near the lung mask
(:func:`lungai.preprocessing.lesion_region.near_lungs`, on the full grid), the region the tumour stage
searches and keeps: half of them inside the lungs (vessels, hila, fissures), half
outside (chest wall, mediastinum, diaphragm), because the wall's volume would otherwise crowd
out the vessels.

A scan that shows a lesion of its own can still give negatives from the other side of the body:
``side`` keeps only centres at least half the cut width beyond the lungs' midline on the
patient's ``left`` or ``right``, so no cut volume, and no augmented ROI taken from it (the
augmentation pads with edge values, never with more of the scan), holds the excluded half.
Which side holds the lesion is knowledge about the scan (``backgrounds/elastix_chest.nrrd`` shows a right-lung
tumour), given by whoever lists it, never a guess of the code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.errors import NotCTError
from lungai.io.reader import read_scan
from lungai.preprocessing.lesion_region import NEAR_LUNG_MM, near_lungs
from lungai.preprocessing.lung_mask import segment_lungs
from lungai.preprocessing.roi import RoiSpec, normalize_hu, resample, resampled_shape

logger = logging.getLogger(__name__)

SIDES = ("both", "left", "right")
#: ROI centres lie on voxels of at least this HU (vessels, chest wall, mediastinum, diaphragm).
SOFT_TISSUE_HU = -500.0
#: Each negative is cut this much larger than the ROI along every axis (room for rotation and shift).
CONTEXT_FACTOR = 1.5


@dataclass(frozen=True)
class NegativeScan:
    """An unlabelled whole scan to cut negatives from.

    Attributes:
        path: any scan ``lungai run`` reads.
        side: ``both``, or the patient's ``left`` / ``right`` half only (the other holds a lesion).
    """

    path: Path
    side: str = "both"

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"unknown side {self.side!r} for {self.path}; choose one of {', '.join(SIDES)}")

    @classmethod
    def parse(cls, text: str) -> NegativeScan:
        """``PATH``, ``PATH:left`` or ``PATH:right``."""
        path, _, side = text.rpartition(":")
        if path and side in SIDES:
            return cls(Path(path), side)
        return cls(Path(text))

    def __str__(self) -> str:
        return str(self.path) if self.side == "both" else f"{self.path}:{self.side}"


def _work_grid(scan: NegativeScan, spec: RoiSpec) -> tuple[np.ndarray, np.ndarray]:
    """The scan's HU and lung labels resampled to the model's spacing."""
    image = read_scan(scan.path).image
    labels = sitk.GetArrayFromImage(segment_lungs(image).labels)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    shape = resampled_shape(hu.shape, spacing, spec)
    return resample(hu, shape, order=1), resample(labels.astype(np.float32), shape, order=0).astype(np.uint8)


def _allowed_centres(hu: np.ndarray, labels: np.ndarray, spec: RoiSpec, side: str) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 3)`` voxel indices where a negative ROI may be centred: in the lungs, and outside them."""
    lungs = labels > 0
    allowed = near_lungs(lungs, spec.spacing_mm(), step=1) & (hu >= SOFT_TISSUE_HU)
    if side != "both":
        columns = np.nonzero(lungs.any(axis=(0, 1)))[0]
        midline = (columns.min() + columns.max()) / 2.0
        half_cut = _cut_shape(spec)[2] / 2.0
        x = np.arange(hu.shape[2])
        # LPS: x grows towards the patient's left.
        keep_x = x >= midline + half_cut if side == "left" else x <= midline - half_cut
        allowed &= keep_x[np.newaxis, np.newaxis, :]
    return np.argwhere(allowed & lungs), np.argwhere(allowed & ~lungs)


def _cut_shape(spec: RoiSpec) -> tuple[int, int, int]:
    """The shape each negative is cut in: the ROI grown by :data:`CONTEXT_FACTOR`."""
    return tuple(int(n * CONTEXT_FACTOR) for n in spec.shape)  # type: ignore[return-value]  # three axes in, three out; mypy cannot count a generator's length


def _cut(volume: np.ndarray, centre: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A ``shape`` block of ``volume`` around ``centre``, edge-padded where it leaves the volume."""
    low = centre - np.asarray(shape) // 2
    pad = [(max(0, -lo), max(0, lo + n - size)) for lo, n, size in zip(low, shape, volume.shape)]
    padded = np.pad(volume, pad, mode="edge")
    start = low + np.array([p[0] for p in pad])
    return padded[tuple(slice(s, s + n) for s, n in zip(start, shape))]


def negative_volumes(scan: NegativeScan, spec: RoiSpec, count: int, seed: int) -> list[np.ndarray]:
    """``count`` normalised tumour-free volumes of ``scan`` at the model's spacing.

    Each is larger than the ROI (:data:`CONTEXT_FACTOR`), so the training augmentation's
    rotations and shifts cut its ROI from real tissue (edge padding only where the volume
    reaches the scan's border).

    Raises:
        NotCTError: the scan has no soft tissue in or near its lungs on the kept side.
        NoLungsFoundError: the scan has no lungs.
    """
    hu, labels = _work_grid(scan, spec)
    inside, outside = _allowed_centres(hu, labels, spec, scan.side)
    if not len(inside) or not len(outside):
        raise NotCTError(f"{scan}: no soft tissue in and within {NEAR_LUNG_MM:g} mm of the lungs to cut negatives "
                         "from; give a chest CT that covers both lungs")
    rng = np.random.default_rng([seed, count])
    chosen = np.concatenate([centres[rng.choice(len(centres), size=n, replace=len(centres) < n)]
                             for centres, n in ((inside, count // 2), (outside, count - count // 2))])
    shape = _cut_shape(spec)
    logger.info("%s: %d negative ROIs from %d allowed centres in and %d around the lungs", scan, count,
                len(inside), len(outside))
    return [normalize_hu(_cut(hu, centre, shape)) for centre in chosen]
