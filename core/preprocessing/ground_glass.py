"""Ground-glass candidates: faint round opacities that the blob filter ranks behind the vessels.

A ground-glass opacity has about a third of a solid nodule's contrast with lung, so the blob
filter (:mod:`lungai.preprocessing.candidates`) finds it among thousands of partial-volume vessel
blobs of the same strength (docs/results.md, "By size and texture"). What sets it apart is its
texture: its voxels are *all* of intermediate density, while a vessel's neighbourhood is solid
tissue beside air with a thin partial-volume shell. Steps:

1. The HU image, cropped to the lungs, is resampled to ``working_spacing_mm`` and smoothed by
   ``smoothing_mm`` (noise).
2. Ground-glass voxels are at least ``above_lung_hu`` denser than the lung around them (the mean
   of the non-solid lung under a Gaussian of ``background_mm``: lung density varies with
   inspiration, gravity and disease) and at most ``solid_hu``, farther than ``solid_margin_mm``
   from solid tissue (the partial-volume shell of vessels, airway walls and solid nodules) and
   farther than ``pleura_margin_mm`` from the lung boundary (the chest wall's partial volume).
3. For each radius ``r`` of ``radii_mm``, the blob response of that binary map is a difference
   of Gaussians, ``G(r / 2) - G(r)``: about 0.5 at the centre of a ball of ground glass of
   radius ``r``, near 0 inside a large opacity (dependent lung) and in scattered voxels. Local
   maxima from ``min_response`` on are peaks; at each, the Hessian of ``G(r / 2)`` gives the
   blobness ``|lambda_min| / |lambda_max|`` (0 for the tubes that small vessels make).
4. Peaks are ranked by ``response x blobness x sqrt(r / 2.5 mm)`` (on the validation scans this
   puts 10 of 22 subsolid nodules among a scan's 10 strongest peaks, against 5 by response
   alone); one closer to a stronger one than the larger of their radii is dropped and the
   strongest ``max_candidates`` are kept.
5. Each kept candidate is measured in the ball of its radius: the ground-glass fill, the solid
   fraction and the mean contrast with the lung around it, for the detector's scorer
   (:mod:`lungai.pipeline.detection`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.preprocessing.candidates import blobness_of, lungs_cropped, on_grid, second_differences, suppress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundGlassConfig:
    """Parameters of the ground-glass candidate filter.

    Attributes:
        working_spacing_mm: finest spacing the filter works at (coarser axes are kept).
        smoothing_mm: Gaussian sigma against noise before the density test.
        above_lung_hu: ground glass is at least this much denser than the lung around it (HU).
        background_mm: Gaussian sigma of "the lung around it" (mean over non-solid lung).
        solid_hu: denser than this is solid tissue.
        solid_margin_mm: ground glass this close to solid tissue does not count.
        pleura_margin_mm: nor this close to the lung boundary.
        radii_mm: opacity radii searched.
        min_response: weakest difference-of-Gaussians response that makes a peak.
        max_candidates: at most this many candidates per scan (the strongest).
    """

    working_spacing_mm: float = 1.5
    smoothing_mm: float = 1.0
    above_lung_hu: float = 70.0
    background_mm: float = 10.0
    solid_hu: float = -350.0
    solid_margin_mm: float = 1.5
    pleura_margin_mm: float = 3.0
    radii_mm: tuple[float, ...] = (2.5, 3.5, 5.0, 7.0, 10.0)
    min_response: float = 0.15
    max_candidates: int = 30


@dataclass(frozen=True)
class GroundGlassCandidate:
    """A ground-glass opacity found by the filter.

    Attributes:
        centre_lps_mm: its centre, LPS mm.
        radius_mm: the radius of its scale.
        rank_value: ``response x blobness x sqrt(radius / 2.5)``.
        response: difference-of-Gaussians response of the ground-glass map (0..1).
        blobness: Hessian blobness of the smoothed ground-glass map (0..1).
        fill: share of ground-glass voxels in the ball of its radius.
        solid_fraction: share of solid voxels (> ``solid_hu``) in that ball.
        contrast_hu: mean HU in that ball minus the lung around it.
    """

    centre_lps_mm: tuple[float, float, float]
    radius_mm: float
    rank_value: float
    response: float
    blobness: float
    fill: float
    solid_fraction: float
    contrast_hu: float

    def features(self) -> list[float]:
        """The scorer's inputs from the filter (:data:`FEATURES`)."""
        return [self.response, self.blobness, self.fill, self.solid_fraction, self.contrast_hu / 100.0,
                math.log(self.radius_mm)]


FEATURES = ("response", "blobness", "fill", "solid_fraction", "contrast_100hu", "log_radius")
"""Names of :meth:`GroundGlassCandidate.features`, in order."""


@dataclass
class _Maps:
    smoothed: np.ndarray
    background: np.ndarray
    glass: np.ndarray
    lungs: np.ndarray
    spacing_zyx: np.ndarray
    blurred: dict[float, np.ndarray] = field(default_factory=dict)


def _ball(radius_mm: float, spacing_zyx: np.ndarray) -> np.ndarray:
    """Structuring element: the voxel offsets within ``radius_mm`` (the same sets as a Euclidean
    distance transform's ``<= radius``, at a twentieth of its cost)."""
    half = np.floor(radius_mm / spacing_zyx).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_zyx)], indexing="ij")
    return np.asarray(sum(g ** 2 for g in grids) <= radius_mm ** 2 + 1e-9)


def _maps(image: sitk.Image, lungs: np.ndarray, cfg: GroundGlassConfig) -> _Maps:
    """The smoothed HU, the lung around each voxel and the ground-glass map (steps 1-2)."""
    spacing_zyx = np.array(image.GetSpacing())[::-1]
    smoothed = ndimage.gaussian_filter(sitk.GetArrayViewFromImage(image).astype(np.float32),
                                       cfg.smoothing_mm / spacing_zyx)
    airy = (lungs & (smoothed <= cfg.solid_hu)).astype(np.float32)
    sigma = cfg.background_mm / spacing_zyx
    background = (ndimage.gaussian_filter(smoothed * airy, sigma)
                  / np.maximum(ndimage.gaussian_filter(airy, sigma), 1e-3))
    solid_near = ndimage.binary_dilation(smoothed > cfg.solid_hu, _ball(cfg.solid_margin_mm, spacing_zyx))
    inner = ndimage.binary_erosion(lungs, _ball(cfg.pleura_margin_mm, spacing_zyx), border_value=1)
    glass = ((smoothed - background >= cfg.above_lung_hu) & ~solid_near & inner).astype(np.float32)
    return _Maps(smoothed, background, glass, lungs, spacing_zyx)


def _blurred(maps: _Maps, sigma_mm: float) -> np.ndarray:
    """The ground-glass map under a Gaussian of ``sigma_mm``, computed once per sigma (the radii
    2.5, 3.5, 5 mm are also half of 5, 7, 10 mm)."""
    if sigma_mm not in maps.blurred:
        maps.blurred[sigma_mm] = ndimage.gaussian_filter(maps.glass, sigma_mm / maps.spacing_zyx)
    return maps.blurred[sigma_mm]


def _scale_peaks(maps: _Maps, radius: float, cfg: GroundGlassConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices, responses and blobness of one scale's local maxima (step 3)."""
    fill = _blurred(maps, radius / 2)
    response = fill - _blurred(maps, radius)
    peaks = (response >= cfg.min_response) & maps.lungs
    peaks &= response == ndimage.maximum_filter(response, size=3)
    indices = np.argwhere(peaks)
    blob = (blobness_of(second_differences(np.pad(fill, 1, mode="edge"), indices, maps.spacing_zyx))
            if len(indices) else np.zeros(0))
    return indices, response[tuple(indices.T)], blob


def _ball_measures(maps: _Maps, index: np.ndarray, radius: float, cfg: GroundGlassConfig) -> tuple[float, float, float]:
    """Fill, solid fraction and mean contrast (HU) in the ball of ``radius`` at ``index`` (step 5)."""
    half = np.ceil(radius / maps.spacing_zyx).astype(int)
    lo = np.maximum(index - half, 0)
    hi = np.minimum(index + half + 1, maps.glass.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = np.meshgrid(*[(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, index, maps.spacing_zyx)],
                        indexing="ij")
    ball = sum(g ** 2 for g in grids) <= radius ** 2
    smoothed = maps.smoothed[box][ball]
    return (float(maps.glass[box][ball].mean()), float(np.mean(smoothed > cfg.solid_hu)),
            float(np.mean(smoothed - maps.background[box][ball])))


def find_ground_glass(image: sitk.Image, lung_labels: sitk.Image,
                      config: GroundGlassConfig | None = None) -> list[GroundGlassCandidate]:
    """Find ground-glass candidates inside the lungs.

    Args:
        image: CT in HU (int16), LPS.
        lung_labels: lung labels on the same grid (any value > 0 is lung).
        config: filter parameters.

    Returns:
        The candidates, strongest first.

    Raises:
        ValueError: if the label image does not match the image grid.
    """
    cfg = config or GroundGlassConfig()
    start = time.perf_counter()
    cropped = lungs_cropped(image, lung_labels, margin_mm=2.0)
    if cropped is None:
        return []
    hu, lungs = on_grid(*cropped, (cfg.working_spacing_mm,) * 3)
    maps = _maps(hu, lungs, cfg)
    found = [(_scale_peaks(maps, r, cfg), r) for r in cfg.radii_mm]
    indices = np.concatenate([f[0][0] for f in found]).reshape(-1, 3)
    responses = np.concatenate([f[0][1] for f in found])
    blob = np.concatenate([f[0][2] for f in found])
    radii = np.concatenate([np.full(len(f[0][0]), f[1]) for f in found])
    rank = responses * blob * np.sqrt(radii / 2.5)
    points = np.array([hu.TransformIndexToPhysicalPoint([int(v) for v in idx[::-1]]) for idx in indices]).reshape(-1, 3)
    result = []
    for i in suppress(points, radii, np.argsort(-rank, kind="stable"), cfg.max_candidates):
        fill, solid, contrast = _ball_measures(maps, indices[i], float(radii[i]), cfg)
        result.append(GroundGlassCandidate((float(points[i][0]), float(points[i][1]), float(points[i][2])),
                                           float(radii[i]), float(rank[i]), float(responses[i]), float(blob[i]),
                                           fill, solid, contrast))
    logger.info("ground-glass candidates: %d of %d peaks in %.1f s", len(result), len(points),
                time.perf_counter() - start)
    return result
