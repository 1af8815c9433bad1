"""The tumour stage: ``r3d_denseunet`` over the lungs and their surroundings, the paper's way.

1. The search region is the lungs' bounding box grown by :data:`SEARCH_MARGIN_MM`, because a
   lung tumour may lie mostly outside the lung mask (a central tumour invading the
   mediastinum, a mass on the chest wall).
2. It is resampled to the model's training spacing (2.5 x 0.8 x 0.8 mm, linear), put into the
   training HU window, and predicted with the paper's procedure
   (:func:`lungai.inference.patches.predict_tumour_mask`: overlapping patches averaged,
   threshold 0.7, in-plane dilation with a 7x7 disk), with two deviations for CPU cost:
   patches are :data:`PATCH_SIZE` (the training depth, 102 mm in-plane, enough for a 6 cm
   mass; the paper: 8 x 256 x 256), and only the windows whose central half holds a *seed* are
   predicted. Seeds are the blob candidates of :func:`lungai.preprocessing.candidates.find_candidates`
   with a radius of at least :data:`MIN_SEED_RADIUS_MM` (blobs of about 13 mm and more in the
   lungs, where a tumour touching the lungs shows), the :data:`MAX_SEEDS` strongest. Predicting every window of a thorax costs minutes
   on a CPU (about 11 microseconds per voxel and window for the CPU-sized network).
3. Only voxels within :data:`NEAR_LUNG_MM` of the lung mask are kept, and connected
   components smaller than :data:`MIN_COMPONENT_ML` (a 10 mm sphere: the model was trained
   on nodules of 15 mm and more) are dropped.
4. The result is mapped back to the scan grid (nearest neighbour); every remaining component
   together is the tumour.

These settings were fixed before the model was checked on any scan.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage
from torch import nn

from lungai.data.roi import normalize_hu, resample, roi_spec
from lungai.inference.patches import TumourPredictionConfig, predict_tumour_mask
from lungai.preprocessing.candidates import Candidate, find_candidates
from lungai.io.findings import Centroid, Tumour
from lungai.preprocessing.measurements import axial_diameters

logger = logging.getLogger(__name__)

TUMOUR_MODEL = "r3d_denseunet"
#: Growth of the lungs' bounding box for the search region (z, y, x) mm.
SEARCH_MARGIN_MM = (20.0, 40.0, 40.0)
#: Tumour voxels must lie within this distance of the lung mask (mm).
NEAR_LUNG_MM = 30.0
#: Smallest blob radius (mm) that seeds a search window: the candidate filter's scale for blobs
#: of about 13 mm and more (the model was trained on nodules of 15 mm and more).
MIN_SEED_RADIUS_MM = 6.0
#: At most this many seeds (the strongest) per scan.
MAX_SEEDS = 10
#: Patch (z, y, x) voxels at the model's spacing.
PATCH_SIZE = (16, 128, 128)
#: Windows per model call. On the 2-core CPU a 16 x 128 x 128 window costs about 0.9 s in a batch
#: of two or four, 1.6 s alone; two add about 50 MB of peak memory, four about 300 MB.
BATCH_SIZE = 2
#: Smallest tumour component kept (mL): a sphere of 10 mm diameter.
MIN_COMPONENT_ML = float(np.pi / 6 * 10.0**3 / 1000.0)
#: In-plane subsampling of the grid the lung distance is computed on (speed; 3.2 mm steps).
_DISTANCE_STEP = 4


def _search_box(lungs: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, slice, slice]:
    box = ndimage.find_objects(lungs.astype(np.uint8))[0]
    return tuple(slice(max(0, b.start - int(np.ceil(m / s))), min(n, b.stop + int(np.ceil(m / s))))  # type: ignore[return-value]
                 for b, m, s, n in zip(box, SEARCH_MARGIN_MM, spacing, lungs.shape))


def near_lungs(lungs: np.ndarray, spacing: tuple[float, float, float], step: int = _DISTANCE_STEP) -> np.ndarray:
    """Voxels within :data:`NEAR_LUNG_MM` of the lung mask (the voxels this stage keeps).

    The distance is computed on a grid ``step`` times coarser in-plane, then repeated (speed; 1
    for the full grid).
    """
    coarse = lungs[:, ::step, ::step]
    distance = ndimage.distance_transform_edt(~coarse, sampling=(spacing[0], spacing[1] * step, spacing[2] * step))
    near = np.repeat(np.repeat(distance <= NEAR_LUNG_MM, step, axis=1), step, axis=2)
    return near[:, : lungs.shape[1], : lungs.shape[2]]


def _drop_small(mask: np.ndarray, voxel_ml: float) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(components.ravel()) * voxel_ml
    keep = sizes >= MIN_COMPONENT_ML
    keep[0] = False
    return keep[components]


def _seeds(image: sitk.Image, candidates: list[Candidate], box: tuple[slice, slice, slice],
           scale: np.ndarray) -> np.ndarray:
    """Work-grid ``(z, y, x)`` indices of the blob candidates large enough to seed a window."""
    points = []
    large = [c for c in candidates if c.radius_mm >= MIN_SEED_RADIUS_MM]
    for candidate in sorted(large, key=lambda c: -c.strength)[:MAX_SEEDS]:
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex(candidate.centre_lps_mm))[::-1]
        points.append((index - [b.start for b in box]) * scale)
    return np.asarray(points, float).reshape(-1, 3)


def _central_half_holds(seeds: np.ndarray, shape: tuple[int, ...], patch: tuple[int, ...]):
    """``keep`` for the sliding window: the window's central half (to the volume's edge at the ends) holds a seed."""
    def keep(corner: tuple[int, ...]) -> bool:
        low = np.array([0 if c == 0 else c + p / 4 for c, p in zip(corner, patch)])
        high = np.array([n if c + p >= n else c + 3 * p / 4 for c, p, n in zip(corner, patch, shape)])
        return bool(np.any(np.all((seeds >= low) & (seeds < high), axis=1)))
    return keep


def segment_tumour(model: nn.Module, hu: np.ndarray, lung_labels: sitk.Image, image: sitk.Image,
                   candidates: list[Candidate] | None = None) -> np.ndarray:
    """The tumour mask on the scan grid (see the module docstring).

    Args:
        model: ``r3d_denseunet`` in eval mode.
        hu: the scan's HU, ``(z, y, x)``.
        lung_labels: the lung label image (not empty).
        image: the scan.
        candidates: the scan's blob candidates (default filter) when already found; ``None``
            finds them.

    Returns:
        Boolean mask, possibly empty.
    """
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    target = roi_spec(TUMOUR_MODEL).spacing
    lungs = sitk.GetArrayFromImage(lung_labels) > 0
    box = _search_box(lungs, spacing)  # type: ignore[arg-type]
    region = hu[box]
    work_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(region.shape, spacing, target))
    if candidates is None:
        candidates = find_candidates(image, lung_labels)
    seeds = _seeds(image, candidates, box, np.asarray(work_shape) / np.asarray(region.shape))
    config = TumourPredictionConfig(patch_size=PATCH_SIZE, batch_size=BATCH_SIZE)
    padded = tuple(max(n, p) for n, p in zip(work_shape, PATCH_SIZE))
    volume = torch.from_numpy(normalize_hu(resample(region.astype(np.float32), work_shape, order=1)))  # type: ignore[arg-type]
    mask = predict_tumour_mask(model, volume, config, _central_half_holds(seeds, padded, PATCH_SIZE))
    lungs_work = resample(lungs[box].astype(np.float32), work_shape, order=0) > 0.5  # type: ignore[arg-type]
    mask &= near_lungs(lungs_work, target)  # type: ignore[arg-type]
    mask = _drop_small(mask, float(np.prod(target)) / 1000.0)
    full = np.zeros(hu.shape, bool)
    if mask.any():
        full[box] = resample(mask.astype(np.float32), region.shape, order=0) > 0.5  # type: ignore[arg-type]
    logger.info("tumour: %.1f mL from %d seed(s) in a %s search region",
                np.count_nonzero(full) * np.prod(spacing) / 1000.0, len(seeds), "x".join(str(b.stop - b.start) for b in box))
    return full


def tumour_finding(mask: np.ndarray, image: sitk.Image) -> Tumour | None:
    """The findings record of a tumour mask; ``None`` when it is empty."""
    if not mask.any():
        return None
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    index = [float(np.mean(axis)) for axis in np.nonzero(mask)]
    lps = image.TransformContinuousIndexToPhysicalPoint(index[::-1])
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return Tumour(volume_ml=round(float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0, 2),
                  long_axis_mm=round(axial_diameters(mask[box], spacing).long_axis_mm, 1),  # type: ignore[arg-type]
                  centroid=Centroid.from_lps(lps, image))


#: Margin (mm) around a mass candidate's rough extent that the tumour model sees (z, y, x).
MASS_MARGIN_MM = (10.0, 20.0, 20.0)


def _mass_box(centre: np.ndarray, extent_mm: np.ndarray, spacing: tuple[float, float, float],
              shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    half = (extent_mm / 2.0 + np.asarray(MASS_MARGIN_MM)) / np.asarray(spacing)
    return tuple(slice(max(0, int(np.floor(c - h))), min(n, int(np.ceil(c + h)) + 1))  # type: ignore[return-value]
                 for c, h, n in zip(centre, half, shape))


def segment_mass(model: nn.Module, hu: np.ndarray, image: sitk.Image, centre_lps_mm: tuple[float, float, float],
                 extent_mm_zyx: tuple[float, float, float], region: np.ndarray) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """One mass segmented by ``r3d_denseunet`` in a box around it, the paper's way, cut to the search region.

    The box is the mass candidate's rough extent plus :data:`MASS_MARGIN_MM`; it is resampled to the
    model's training spacing and predicted with every window whose central half holds the mass's
    centre (overlapping windows averaged, threshold 0.7, in-plane dilation with a 7x7 disk), mapped
    back, cut to the lesion search region (never the mediastinum) and reduced to the component at
    (or nearest) the centre.

    Args:
        model: ``r3d_denseunet`` in eval mode.
        hu: the scan's HU, ``(z, y, x)``.
        image: the scan.
        centre_lps_mm: the mass candidate's deepest point.
        extent_mm_zyx: its rough extent.
        region: the lesion search region on the scan grid.

    Returns:
        The box on the scan grid and the mask inside it (possibly empty).
    """
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    target = roi_spec(TUMOUR_MODEL).spacing
    centre = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in centre_lps_mm]))[::-1]
    box = _mass_box(centre, np.asarray(extent_mm_zyx, float), spacing, hu.shape)  # type: ignore[arg-type]
    region_hu = hu[box]
    work_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(region_hu.shape, spacing, target))
    seed = ((centre - [b.start for b in box]) * np.asarray(work_shape) / np.asarray(region_hu.shape))[None]
    padded = tuple(max(n, p) for n, p in zip(work_shape, PATCH_SIZE))
    volume = torch.from_numpy(normalize_hu(resample(region_hu.astype(np.float32), work_shape, order=1)))  # type: ignore[arg-type]
    config = TumourPredictionConfig(patch_size=PATCH_SIZE, batch_size=BATCH_SIZE)
    work = predict_tumour_mask(model, volume, config, _central_half_holds(seed, padded, PATCH_SIZE))
    mask = resample(work.astype(np.float32), region_hu.shape, order=0) > 0.5  # type: ignore[arg-type]
    mask &= region[box]
    components, count = ndimage.label(mask)
    if count:
        voxels = np.argwhere(components > 0)
        local = centre - [b.start for b in box]
        nearest = voxels[int(np.argmin((((voxels - local) * spacing) ** 2).sum(axis=1)))]
        mask = components == components[tuple(nearest)]
    logger.info("mass at %s: %.1f mL segmented by %s", tuple(round(v) for v in centre_lps_mm),
                np.count_nonzero(mask) * np.prod(spacing) / 1000.0, TUMOUR_MODEL)
    return box, mask
