"""Nodule candidates: a multi-scale blob (dot-enhancement) filter inside the lung mask.

The search space is limited to lung tissue, as the nodule paper does (threshold + morphology;
here :func:`lungai.preprocessing.lung_mask.segment_lungs`, whose 15 mm closing keeps
juxtapleural nodules inside). Steps:

1. The HU image is resampled to a coarse working grid (``working_spacing_mm``, 2 mm; coarser
   axes are kept) and clipped to ``[-1000, hu_ceiling]``; everything outside the lungs is set
   to ``outside_hu`` (lung-like air), so the chest wall and mediastinum give no response.
2. For each radius ``r`` of ``radii_mm`` (2 to 15 mm: nodules of 4 to 30 mm) the image is
   smoothed with a Gaussian of ``sigma = r / sqrt(3)`` (the scale at which the normalised
   Laplacian of a ball of radius ``r`` peaks) and the scale-normalised blob response
   ``-sigma^2 * Laplacian`` is taken (radii from ``coarse_from_mm`` on a grid twice as coarse).
3. Local maxima of the response inside the lungs, above ``min_strength_hu``, are peaks. At
   each, the Hessian of the smoothed image separates blobs from tubes and sheets (Li, Sone and
   Doi 2003's dot enhancement): all three eigenvalues must be negative and the
   smallest-magnitude one at least ``min_blobness`` of the largest; vessels (one eigenvalue
   near 0) and fissures (two near 0) fail this.
4. The strength is the response times the blobness, scaled down for radii below
   ``full_weight_radius_mm`` (a ranking chosen on validation inserted-nodule scans: without
   it, vessel cross-sections crowd out small nodules).
5. Non-maximum suppression over all scales: a peak closer to a stronger one than the larger
   of their radii is dropped; the strongest ``max_candidates`` are kept.

:func:`strength_score` maps the strength (HU) to 0..1, the detection score when there is no
false-positive classifier.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateConfig:
    """Parameters of the candidate filter.

    Attributes:
        working_spacing_mm: finest (x, y, z) spacing the filter works at; finer axes are resampled.
        radii_mm: blob radii searched (nodule diameters of 4 to 30 mm).
        full_weight_radius_mm: blobs smaller than this have their strength scaled down by
            ``radius / full_weight_radius_mm`` (most small blobs are vessel cross-sections).
        coarse_from_mm: radii from this one up are searched on a grid twice as coarse.
        hu_ceiling: intensities are clipped to this (bone and contrast do not dominate).
        outside_hu: value given to everything outside the lung mask.
        min_strength_hu: weakest blob response (HU) that makes a candidate.
        min_blobness: smallest |lambda_min| / |lambda_max| of the Hessian at a candidate.
        max_candidates: at most this many candidates per scan (the strongest).
        strength_scale_hu: the response that maps to a score of about 0.63 (``1 - 1/e``).
    """

    working_spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    radii_mm: tuple[float, ...] = (2.0, 2.75, 3.75, 5.0, 6.5, 8.5, 11.0, 15.0)
    full_weight_radius_mm: float = 3.0
    coarse_from_mm: float = 5.0
    hu_ceiling: float = 200.0
    outside_hu: float = -900.0
    min_strength_hu: float = 60.0
    min_blobness: float = 0.15
    max_candidates: int = 300
    strength_scale_hu: float = 300.0


@dataclass(frozen=True)
class Candidate:
    """A blob found by the filter.

    Attributes:
        centre_lps_mm: its centre, LPS mm.
        radius_mm: the radius of the scale with the strongest response.
        strength: the dot-weighted blob response (HU).
        blobness: |lambda_min| / |lambda_max| of the Hessian (1 for a ball, 0 for a tube).
    """

    centre_lps_mm: tuple[float, float, float]
    radius_mm: float
    strength: float
    blobness: float


def strength_score(strength: float, config: CandidateConfig | None = None) -> float:
    """Map a candidate strength (HU) to 0..1: ``1 - exp(-strength / strength_scale_hu)``."""
    cfg = config or CandidateConfig()
    return float(1.0 - math.exp(-max(strength, 0.0) / cfg.strength_scale_hu))


def _lung_box(lung_labels: sitk.Image, margin_mm: float) -> tuple[list[int], list[int]] | None:
    """Index and size (x, y, z) of the lungs' bounding box plus a margin, or ``None`` without lungs."""
    array = sitk.GetArrayViewFromImage(lung_labels)
    present = [np.flatnonzero(array.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if any(p.size == 0 for p in present):
        return None
    lo_zyx = np.array([p[0] for p in present])
    hi_zyx = np.array([p[-1] for p in present])
    pad = np.ceil(margin_mm / np.array(lung_labels.GetSpacing())[::-1]).astype(int)
    lo = np.maximum(lo_zyx - pad, 0)
    hi = np.minimum(hi_zyx + pad, np.array(array.shape) - 1)
    return [int(v) for v in lo[::-1]], [int(v) for v in (hi - lo + 1)[::-1]]


def _resample(image: sitk.Image, spacing_mm: tuple[float, float, float], interpolator: int,
              default: float, pixel: int) -> sitk.Image:
    """Resample to at least ``spacing_mm`` per axis (coarser axes kept), same extent and direction."""
    spacing = np.array(image.GetSpacing())
    new_spacing = np.maximum(spacing, spacing_mm)
    size = np.array(image.GetSize())
    new_size = np.maximum(np.round(size * spacing / new_spacing), 1).astype(int)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((new_spacing - spacing) / 2.0)
    return sitk.Resample(image, [int(v) for v in new_size], sitk.Transform(), interpolator, origin.tolist(),
                         new_spacing.tolist(), image.GetDirection(), default, pixel)


def lungs_cropped(image: sitk.Image, lung_labels: sitk.Image,
                  margin_mm: float) -> tuple[sitk.Image, sitk.Image] | None:
    """The image and labels cropped to the lungs' bounding box plus ``margin_mm``; ``None`` without lungs.

    Raises:
        ValueError: if the label image does not match the image grid.
    """
    if image.GetSize() != lung_labels.GetSize():
        raise ValueError(f"lung labels of size {lung_labels.GetSize()} do not match the image {image.GetSize()}")
    box = _lung_box(lung_labels, margin_mm)
    if box is None:
        return None
    return sitk.RegionOfInterest(image, box[1], box[0]), sitk.RegionOfInterest(lung_labels, box[1], box[0])


def on_grid(image: sitk.Image, lung_labels: sitk.Image,
            spacing_mm: tuple[float, float, float]) -> tuple[sitk.Image, np.ndarray]:
    """The float image resampled to at least ``spacing_mm`` (:func:`resample_to`) and its lung mask array."""
    hu = _resample(image, spacing_mm, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    lung = sitk.GetArrayFromImage(_resample(sitk.Cast(lung_labels > 0, sitk.sitkFloat32), spacing_mm,
                                            sitk.sitkLinear, 0.0, sitk.sitkFloat32)) >= 0.5
    return hu, lung


def _prepare(image: sitk.Image, lung_labels: sitk.Image, spacing_mm: tuple[float, float, float],
             cfg: CandidateConfig) -> tuple[sitk.Image, np.ndarray]:
    """The clipped, lung-only float image on a working grid and its lung mask array."""
    hu, lung = on_grid(image, lung_labels, spacing_mm)
    array = np.clip(sitk.GetArrayFromImage(hu), -1000.0, cfg.hu_ceiling)
    array[~lung] = cfg.outside_hu
    prepared = sitk.GetImageFromArray(array)
    prepared.CopyInformation(hu)
    return prepared, lung


def second_differences(padded: np.ndarray, points: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    """Hessians ``(N, 3, 3)`` (z, y, x) of an edge-padded array at ``points`` (indices of the unpadded one)."""
    p = points + 1
    unit = np.eye(3, dtype=int)

    def at(offset: np.ndarray) -> np.ndarray:
        q = p + offset
        return padded[q[:, 0], q[:, 1], q[:, 2]]

    centre = at(np.zeros(3, dtype=int))
    h = np.zeros((len(points), 3, 3))
    for a in range(3):
        h[:, a, a] = (at(unit[a]) + at(-unit[a]) - 2 * centre) / spacing_zyx[a] ** 2
        for b in range(a + 1, 3):
            cross = at(unit[a] + unit[b]) + at(-unit[a] - unit[b]) - at(unit[a] - unit[b]) - at(unit[b] - unit[a])
            h[:, a, b] = h[:, b, a] = cross / (4 * spacing_zyx[a] * spacing_zyx[b])
    return h


def _laplacian(padded: np.ndarray, spacing_zyx: np.ndarray) -> np.ndarray:
    """Central-difference Laplacian of an edge-padded array (result has the unpadded shape)."""
    core = padded[1:-1, 1:-1, 1:-1]
    out = (padded[:-2, 1:-1, 1:-1] + padded[2:, 1:-1, 1:-1] - 2 * core) / spacing_zyx[0] ** 2
    out += (padded[1:-1, :-2, 1:-1] + padded[1:-1, 2:, 1:-1] - 2 * core) / spacing_zyx[1] ** 2
    out += (padded[1:-1, 1:-1, :-2] + padded[1:-1, 1:-1, 2:] - 2 * core) / spacing_zyx[2] ** 2
    return out


def blobness_of(hessians: np.ndarray) -> np.ndarray:
    """|lambda_min| / |lambda_max| where all eigenvalues are negative (a bright blob), else 0."""
    eig = np.linalg.eigvalsh(hessians)
    magnitudes = np.abs(eig)
    ratio = magnitudes.min(axis=1) / np.maximum(magnitudes.max(axis=1), 1e-12)
    return np.where(eig.max(axis=1) < 0, ratio, 0.0)


@dataclass
class _Peaks:
    points_lps: np.ndarray
    radii: np.ndarray
    strengths: np.ndarray
    blobness: np.ndarray


def _scale_peaks(prepared: sitk.Image, lung: np.ndarray, radius: float, cfg: CandidateConfig) -> _Peaks:
    """Blob peaks of one scale: local maxima of the normalised response inside the lungs."""
    spacing_zyx = np.array(prepared.GetSpacing())[::-1]
    sigma = radius / math.sqrt(3.0)
    smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(prepared, sigma))
    padded = np.pad(smoothed, 1, mode="edge")
    response = (-(sigma ** 2)) * _laplacian(padded, spacing_zyx)
    peaks = (response >= cfg.min_strength_hu) & lung
    peaks &= response == ndimage.maximum_filter(response, size=3)
    indices = np.argwhere(peaks)
    blob = blobness_of(second_differences(padded, indices, spacing_zyx)) if len(indices) else np.zeros(0)
    keep = blob >= cfg.min_blobness
    indices, blob = indices[keep], blob[keep]
    strengths = response[tuple(indices.T)] * blob * min(radius / cfg.full_weight_radius_mm, 1.0)
    points = np.array([prepared.TransformIndexToPhysicalPoint([int(v) for v in idx[::-1]]) for idx in indices])
    return _Peaks(points.reshape(-1, 3), np.full(len(indices), radius), strengths.astype(float), blob)


def suppress(points: np.ndarray, radii: np.ndarray, order: np.ndarray, limit: int) -> list[int]:
    """Greedy non-maximum suppression over ``order`` (strongest first)."""
    kept: list[int] = []
    for i in order:
        if kept:
            d = np.linalg.norm(points[kept] - points[i], axis=1)
            if np.any(d < np.maximum(radii[kept], radii[i])):
                continue
        kept.append(int(i))
        if len(kept) >= limit:
            break
    return kept


def find_candidates(image: sitk.Image, lung_labels: sitk.Image,
                    config: CandidateConfig | None = None) -> list[Candidate]:
    """Find nodule candidates inside the lungs.

    Radii up to ``coarse_from_mm`` are searched on the ``working_spacing_mm`` grid, larger ones
    on a grid twice as coarse (a Gaussian that wide loses nothing there), both cropped to the
    lungs' bounding box. Scales whose sigma is under half the grid's median spacing are
    skipped: a finite-difference Laplacian there measures noise, not blobs (on coarse scans the
    smallest radii go).

    Args:
        image: CT in HU (int16), LPS.
        lung_labels: lung labels on the same grid (any value > 0 is lung).
        config: filter parameters.

    Returns:
        The candidates, strongest first.

    Raises:
        ValueError: if the label image does not match the image grid.
    """
    cfg = config or CandidateConfig()
    start = time.perf_counter()
    cropped = lungs_cropped(image, lung_labels, margin_mm=2 * max(cfg.radii_mm))
    if cropped is None:
        return []
    image, lung_labels = cropped
    x, y, z = (float(v) for v in cfg.working_spacing_mm)
    grids = {(x, y, z): [r for r in cfg.radii_mm if r < cfg.coarse_from_mm],
             (2 * x, 2 * y, 2 * z): [r for r in cfg.radii_mm if r >= cfg.coarse_from_mm]}
    found: list[_Peaks] = []
    for spacing, radii in grids.items():
        if radii:
            prepared, lung = _prepare(image, lung_labels, spacing, cfg)
            finest = 0.5 * float(np.median(prepared.GetSpacing()))
            found += [_scale_peaks(prepared, lung, r, cfg) for r in radii if r / math.sqrt(3.0) >= finest]
    if not found:
        return []
    points = np.concatenate([p.points_lps for p in found])
    radii_a = np.concatenate([p.radii for p in found])
    strengths = np.concatenate([p.strengths for p in found])
    blob = np.concatenate([p.blobness for p in found])
    kept = suppress(points, radii_a, np.argsort(-strengths, kind="stable"), cfg.max_candidates)
    result = [Candidate((float(points[i][0]), float(points[i][1]), float(points[i][2])), float(radii_a[i]),
                        float(strengths[i]), float(blob[i])) for i in kept]
    logger.info("candidates: %d of %d blob peaks in %.1f s", len(result), len(points), time.perf_counter() - start)
    return result
