"""Where lung lesions are searched: the lungs with their disease, and the masses that replace them.

The anatomical lung mask (:mod:`lungai.preprocessing.lung_mask`) holds aerated lung. A mass that
replaces lung tissue, or abuts the mediastinum or chest wall, is not aerated and lies outside it:
the lung wraps around it and leaves a concavity. The lesion search region fills those concavities.

1. Each lung is closed with a ball of :attr:`LesionRegionConfig.closing_radius_mm` (25 mm) on a
   coarse working grid (:attr:`LesionRegionConfig.working_spacing_mm`); the region is the two
   lungs and their closings. The closing is done with distance transforms (a dilation then an
   erosion by thresholded Euclidean distances), exact for a ball and linear in the voxel count.
   A concavity narrower than 50 mm is filled; the mediastinum between the lungs, the heart's
   fossa and the diaphragm's dome are far wider and stay outside.
2. Masses: soft tissue (at least :attr:`LesionRegionConfig.soft_tissue_hu`) of the region whose
   inscribed ball has a radius of at least :attr:`LesionRegionConfig.min_core_radius_mm` (10 mm,
   a lesion at least 20 mm thick everywhere in one place). Vessels, bronchial walls, fissures and
   the rim of soft tissue the closing adds along the pleura are thinner. Each connected core is
   one mass candidate. :func:`mass_mask` segments it on the scan grid: the soft tissue of the
   region connected to the core and within :data:`MASS_REACH` core radii of it (a lesion does not
   reach farther from its thickest part than it is thick; the bound keeps the mask off the
   aorta, chest wall and vessels that touch it).
3. :func:`lesion_plausibility` rejects segmentations that are not lung lesions: those that lie
   mostly outside the region (hilar and mediastinal structures), those of a blob detection that
   grew far beyond the blob (:data:`MAX_BLOB_GROWTH`), tubular ones (thinnest-to-longest ratio
   below :data:`MIN_THICKNESS_RATIO`) and branching ones (filling less than :data:`MIN_SOLIDITY`
   of their convex hull: a vessel bifurcation is a thick Y). The ratios are set at or below the
   extremes measured over the validation-split nodules of ``lidc_vois``, so they keep every
   validation nodule.
4. A segmentation that lies mostly outside the region may be a juxtapleural nodule whose mask ran
   on into the chest wall or the diaphragm (soft tissue next to soft tissue). Where the part
   outside lies mostly beyond the mediastinum (:func:`mediastinum`: between the two lungs), the
   nodule stage cuts the mask at the region's edge and checks the part inside again
   (:func:`lungai.pipeline.nodules.plausible_lesion`); a hilar or mediastinal structure, whose
   outside part is mediastinal, is dropped as before.
5. A segmentation that fails these checks, or that is mostly attachment, may be a nodule whose
   mask ran on along the vessels attached to it. :func:`detached` opens the mask with a ball of
   :data:`OPENING_FRACTION` of the body's inscribed radius at the detection (a morphological
   opening, as classical nodule segmentation detaches vessels): thinner attachments fall away, the
   body stays. The nodule stage (:func:`lungai.pipeline.nodules.plausible_lesion`) checks the body
   again; a vessel or a hilar structure stays tubular, branching or outside the region, and is
   dropped as before.

The settings were fixed from anatomy (a nodule is at most 30 mm, a mass thicker) before any check
on the test scans; docs/results.md gives what they do there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull

from lungai import labels

logger = logging.getLogger(__name__)

_VOXEL_CORNERS = np.array(np.meshgrid(*[(-0.5, 0.5)] * 3, indexing="ij")).reshape(3, -1).T

#: Smallest ratio of a lesion's inscribed-ball diameter to its long axis: 0.201 is the smallest of
#: the 121 validation-split reader-consensus masks of ``lidc_vois`` (1st percentile 0.30).
MIN_THICKNESS_RATIO = 0.2
#: Smallest fraction of its convex hull a lesion fills (solidity): 0.362 is the smallest of the same
#: 121 masks (1st percentile 0.371), 0.35 the smallest of the shipped segmentations of the nodules
#: found on six validation inserted-nodule scans, where vessel branchings fill 0.08 to 0.27.
MIN_SOLIDITY = 0.3
#: A lesion with more than this fraction of its volume outside the search region is not a lung lesion.
MAX_OUTSIDE_FRACTION = 0.5
#: A segmentation mostly outside the search region is cut at its edge (a juxtapleural nodule that ran
#: into the wall) only when at most this fraction of the part outside lies in the mediastinum.
MAX_MEDIASTINAL_FRACTION = 0.5
#: How far (in core radii) a mass reaches from its core. On Lung-PET-CT-Dx A0001, the one labelled
#: mass, 1.0 and 1.5 both give 10 of its 11 box slices at IoU >= 0.5; 1.0 gives the better mean box
#: IoU (0.69 against 0.58) and fewer slices beyond the boxes (docs/results.md).
MASS_REACH = 1.0
#: Largest ratio of a blob detection's segmented long axis to the blob's diameter: 4.38 is the largest
#: over the 119 validation-split ``lidc_vois`` nodules that the candidate filter finds (the strongest
#: candidate within the nodule; 95th percentile 2.29). A larger mask followed vessels out of the blob.
MAX_BLOB_GROWTH = 4.5
#: Lesions shorter than this (mm) are not checked for shape (a few voxels have no meaningful shape).
SHAPE_CHECK_FROM_MM = 10.0
#: Radius of :func:`detached`'s opening ball, as a fraction of the lesion body's inscribed radius: a
#: vessel thinner than half the nodule is cut off.
OPENING_FRACTION = 0.5
#: :func:`detached` looks for the lesion body within this distance (mm) of the detection, at least.
BODY_SEARCH_MM = 3.0


@dataclass(frozen=True)
class LesionRegionConfig:
    """Parameters of the lesion search region and the mass candidates.

    Attributes:
        closing_radius_mm: radius of the ball each lung is closed with.
        working_spacing_mm: finest (z, y, x) spacing the region is computed at.
        soft_tissue_hu: voxels at or above this are non-aerated tissue.
        min_core_radius_mm: smallest inscribed-ball radius of a mass candidate.
    """

    closing_radius_mm: float = 25.0
    working_spacing_mm: tuple[float, float, float] = (2.5, 2.5, 2.5)
    soft_tissue_hu: float = -300.0
    min_core_radius_mm: float = 10.0


@dataclass(frozen=True)
class MassCandidate:
    """A thick soft-tissue lesion in the search region.

    Attributes:
        centre_lps_mm: the point deepest inside it, LPS mm.
        core_radius_mm: the radius of its largest inscribed ball.
        extent_mm_zyx: the size of its rough extent's bounding box (z, y, x), mm.
        core_lps_mm: points of its core (centres of the working grid's voxels), ``(N, 3)`` LPS mm.
    """

    centre_lps_mm: tuple[float, float, float]
    core_radius_mm: float
    extent_mm_zyx: tuple[float, float, float]
    core_lps_mm: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 3)))


@dataclass
class LesionRegion:
    """The search region on the scan grid and the mass candidates found in it.

    Attributes:
        region: boolean ``(z, y, x)`` array, the lungs with their disease.
        masses: the mass candidates, thickest first.
    """

    region: np.ndarray
    masses: list[MassCandidate]


def _steps(spacing_zyx: np.ndarray, cfg: LesionRegionConfig) -> np.ndarray:
    return np.maximum(1, np.round(np.asarray(cfg.working_spacing_mm) / spacing_zyx)).astype(int)


def _closed(mask: np.ndarray, radius_mm: float, spacing_zyx: np.ndarray) -> np.ndarray:
    """Closing of a non-empty ``mask`` with a ball, by two distance transforms.

    They run on the mask's bounding box padded by the ball's radius and one voxel more, so edges do
    not erode: the closing lies in the padded box, and every distance inside it equals the whole
    grid's (the nearest background voxel of the dilation is never beyond the box's false rim).
    """
    pad = np.ceil(radius_mm / spacing_zyx).astype(int) + 1
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    padded = np.pad(mask[box], [(p, p) for p in pad])
    dilated = ndimage.distance_transform_edt(~padded, sampling=spacing_zyx) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=spacing_zyx) > radius_mm
    low = [b.start - p for b, p in zip(box, pad)]  # the padded box's first voxel on the grid (may lie before it)
    on_grid = tuple(slice(max(lo, 0), min(lo + c, n)) for lo, c, n in zip(low, closed.shape, mask.shape))
    out = mask.copy()
    out[on_grid] |= closed[tuple(slice(g.start - lo, g.stop - lo) for g, lo in zip(on_grid, low))]
    return out


def _upsampled(coarse: np.ndarray, step: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    full = coarse
    for axis, s in enumerate(step):
        full = np.repeat(full, s, axis=axis)
    return full[: shape[0], : shape[1], : shape[2]]


def _to_lps(image: sitk.Image, index_zyx: np.ndarray) -> np.ndarray:
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_zyx[::-1]]))


def _mass_candidates(soft: np.ndarray, image: sitk.Image, origin_index: np.ndarray, step: np.ndarray,
                     spacing_zyx: np.ndarray, cfg: LesionRegionConfig) -> list[MassCandidate]:
    """Thick cores of the coarse soft-tissue mask (see the module docstring, step 2)."""
    depth = ndimage.distance_transform_edt(np.pad(soft, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    cores, count = ndimage.label(depth >= cfg.min_core_radius_mm)
    found = []
    for index, box in enumerate(ndimage.find_objects(cores), start=1):
        core = cores[box] == index
        local = np.where(core, depth[box], 0.0)
        deepest = np.array(np.unravel_index(int(np.argmax(local)), local.shape)) + [b.start for b in box]
        radius = float(depth[tuple(deepest)])
        near_core = ndimage.distance_transform_edt(cores != index, sampling=spacing_zyx) <= MASS_REACH * radius
        extent_box = ndimage.find_objects((near_core & soft).astype(np.uint8))[0]
        extent_z, extent_y, extent_x = (float((b.stop - b.start) * s) for b, s in zip(extent_box, spacing_zyx))
        lps = _to_lps(image, origin_index + deepest * step + (step - 1) / 2.0)
        core_points = np.array([_to_lps(image, origin_index + v * step + (step - 1) / 2.0)
                                for v in np.argwhere(core) + [b.start for b in box]])
        centre = (float(lps[0]), float(lps[1]), float(lps[2]))
        found.append(MassCandidate(centre, round(radius, 1), (extent_z, extent_y, extent_x), core_points))
    return sorted(found, key=lambda m: -m.core_radius_mm)


def lesion_region(image: sitk.Image, lung_labels: sitk.Image, config: LesionRegionConfig | None = None) -> LesionRegion:
    """The lesion search region and the mass candidates (see the module docstring).

    Args:
        image: CT in HU, LPS, axis-aligned (as :func:`lungai.io.reader.read_scan` gives).
        lung_labels: the lung labels on the same grid (right and left lung values of :mod:`lungai.labels`).
        config: parameters.

    Returns:
        The region on the scan grid and the mass candidates.
    """
    cfg = config or LesionRegionConfig()
    start = time.perf_counter()
    lungs = sitk.GetArrayViewFromImage(lung_labels)
    hu = sitk.GetArrayViewFromImage(image)
    spacing = np.array(image.GetSpacing(), float)[::-1]
    step = _steps(spacing, cfg)
    coarse_spacing = spacing * step
    sub = tuple(slice(None, None, int(s)) for s in step)
    region_coarse = np.zeros(lungs[sub].shape, bool)
    for value in (labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value):
        lung = lungs[sub] == value
        if lung.any():
            region_coarse |= _closed(lung, cfg.closing_radius_mm, coarse_spacing)
    region = _upsampled(region_coarse, step, lungs.shape) | (lungs > 0)
    soft = region_coarse & (hu[sub] >= cfg.soft_tissue_hu)
    masses = _mass_candidates(soft, image, np.zeros(3), step, coarse_spacing, cfg)
    logger.info("lesion region: %.0f mL beyond the lung mask, %d mass candidate(s) in %.1f s",
                np.count_nonzero(region & (lungs == 0)) * float(np.prod(spacing)) / 1000.0, len(masses),
                time.perf_counter() - start)
    return LesionRegion(region=region, masses=masses)


def mediastinum(lungs: np.ndarray) -> np.ndarray:
    """Bool ``(z, y, x)``: the mediastinum, slice by slice the non-lung voxels between the two lungs.

    Between the right lung's medial edge and the left lung's (the 90th and 10th percentiles of their
    columns; right lung label 1, left 2), within the lungs' front-to-back extent. Slices with one lung
    or none have no mediastinum.
    """
    between = np.zeros(lungs.shape, bool)
    for z in range(lungs.shape[0]):
        right = np.nonzero(lungs[z] == labels.LUNG_RIGHT.value)
        left = np.nonzero(lungs[z] == labels.LUNG_LEFT.value)
        if not len(right[1]) or not len(left[1]):
            continue
        low, high = sorted((int(np.percentile(right[1], 90)), int(np.percentile(left[1], 10))))
        rows = np.concatenate([right[0], left[0]])
        between[z, rows.min():rows.max() + 1, low:high + 1] = True
    return between & (lungs == 0)


def mass_mask(candidate: MassCandidate, image: sitk.Image, region: np.ndarray,
              config: LesionRegionConfig | None = None) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Segment a mass candidate on the scan grid (see the module docstring, step 2).

    Args:
        candidate: from :func:`lesion_region`.
        image: the scan (HU).
        region: the lesion search region on the scan grid.
        config: the parameters the candidate was found with.

    Returns:
        The box on the scan grid and the mask inside it (the component at the candidate's centre).
    """
    cfg = config or LesionRegionConfig()
    hu = sitk.GetArrayViewFromImage(image)
    spacing = np.array(image.GetSpacing(), float)[::-1]
    reach = MASS_REACH * candidate.core_radius_mm
    core_index = np.array([image.TransformPhysicalPointToContinuousIndex([float(v) for v in p])[::-1]
                           for p in candidate.core_lps_mm]).reshape(-1, 3)
    pad = np.ceil((reach + np.asarray(cfg.working_spacing_mm)) / spacing).astype(int)
    low = np.maximum(np.floor(core_index.min(axis=0)).astype(int) - pad, 0)
    high = np.minimum(np.ceil(core_index.max(axis=0)).astype(int) + pad + 1, hu.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    core = np.zeros(tuple(high - low), bool)
    cells = np.ceil(np.asarray(cfg.working_spacing_mm) / spacing / 2.0).astype(int)
    for point in np.round(core_index - low).astype(int):
        core[tuple(slice(max(0, p - c), p + c + 1) for p, c in zip(point, cells))] = True
    near = ndimage.distance_transform_edt(~core, sampling=spacing) <= reach
    tissue = near & region[box] & (hu[box] >= cfg.soft_tissue_hu)
    components, count = ndimage.label(tissue)
    centre = np.round(np.asarray(image.TransformPhysicalPointToContinuousIndex(candidate.centre_lps_mm))[::-1]
                      - low).astype(int)
    label = components[tuple(np.clip(centre, 0, np.array(tissue.shape) - 1))] if count else 0
    if label == 0 and count:
        label = int(np.argmax(np.bincount(components[core].ravel(), minlength=count + 1)[1:])) + 1
    return box, components == label if label else np.zeros(tissue.shape, bool)  # type: ignore[return-value]  # find_objects gives a box of three slices for a 3D array


#: Training negatives lie within this distance (mm) of the lung mask (:func:`near_lungs`).
NEAR_LUNG_MM = 30.0


def near_lungs(lungs: np.ndarray, spacing: tuple[float, float, float], step: int = 4) -> np.ndarray:
    """Voxels within :data:`NEAR_LUNG_MM` of the lung mask: where lesion-free training negatives are cut.

    The distance is computed on a grid ``step`` times coarser in-plane, then repeated (speed; 1
    for the full grid).
    """
    coarse = lungs[:, ::step, ::step]
    distance = ndimage.distance_transform_edt(~coarse, sampling=(spacing[0], spacing[1] * step, spacing[2] * step))
    near = np.repeat(np.repeat(distance <= NEAR_LUNG_MM, step, axis=1), step, axis=2)
    return near[:, : lungs.shape[1], : lungs.shape[2]]


def inscribed_diameter_mm(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """Diameter (mm) of the largest ball inside ``mask`` (voxel-centre distance to the background, doubled)."""
    return 2.0 * float(ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing_zyx).max())


def solidity(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """Fraction of its convex hull a mask fills: 1 for a ball, about 0.1-0.3 for a vessel branching.

    The hull is that of the surface voxels' corners, so a one-voxel mask has solidity 1.
    """
    surface = mask & ~ndimage.binary_erosion(mask)
    corners = np.argwhere(surface)[:, None, :] + _VOXEL_CORNERS[None]
    hull = ConvexHull(corners.reshape(-1, 3) * np.asarray(spacing_zyx)).volume
    return float(np.count_nonzero(mask) * np.prod(spacing_zyx) / hull)


def wall_spill(mask: np.ndarray, box: tuple[slice, slice, slice], region: np.ndarray, lungs: np.ndarray) -> bool:
    """Whether the part of a lesion outside the search region lies mostly beyond the mediastinum
    (chest wall, diaphragm): at most :data:`MAX_MEDIASTINAL_FRACTION` of it in the :func:`mediastinum`
    of the lung labels ``lungs`` (scan grid; found on the box's slices only)."""
    outside = mask & ~region[box]
    if not outside.any():
        return False
    between = mediastinum(lungs[box[0]])[:, box[1], box[2]]
    return float(between[outside].mean()) <= MAX_MEDIASTINAL_FRACTION


def outside_fraction(mask: np.ndarray, box: tuple[slice, slice, slice], region: np.ndarray) -> float:
    """Fraction of a lesion's voxels (``mask`` inside ``box``) that lie outside the search region."""
    return float(np.count_nonzero(mask & ~region[box])) / max(int(np.count_nonzero(mask)), 1)


def overgrown(long_axis_mm: float, blob_radius_mm: float | None) -> bool:
    """Whether a blob detection's segmentation exceeds :data:`MAX_BLOB_GROWTH` times the blob's diameter."""
    return blob_radius_mm is not None and long_axis_mm > MAX_BLOB_GROWTH * 2.0 * blob_radius_mm


def lesion_plausibility(mask: np.ndarray, box: tuple[slice, slice, slice], region: np.ndarray,
                        spacing_zyx: tuple[float, float, float], long_axis_mm: float,
                        blob_radius_mm: float | None = None) -> str | None:
    """Why a segmented lesion is not a lung lesion, or ``None`` when it may be one.

    Args:
        mask: the lesion's mask inside ``box``.
        box: where it lies on the scan grid.
        region: the lesion search region (:func:`lesion_region`), scan grid.
        spacing_zyx: scan spacing.
        long_axis_mm: the lesion's long axis.
        blob_radius_mm: the blob candidate's radius for a blob detection (``None`` for a mass).

    Returns:
        A short reason (for the log), or ``None``.
    """
    outside = outside_fraction(mask, box, region)
    if outside > MAX_OUTSIDE_FRACTION:
        return f"{outside:.0%} of it lies outside the lungs and their lesions (hilum or mediastinum)"
    if overgrown(long_axis_mm, blob_radius_mm):
        assert blob_radius_mm is not None
        return (f"its segmentation ({long_axis_mm:.0f} mm) is over {MAX_BLOB_GROWTH:g} times the blob the detector "
                f"saw ({2 * blob_radius_mm:.0f} mm): it follows vessels")
    if long_axis_mm >= SHAPE_CHECK_FROM_MM:
        ratio = inscribed_diameter_mm(mask, spacing_zyx) / long_axis_mm
        if ratio < MIN_THICKNESS_RATIO:
            return f"tubular or branching (thickness {ratio:.2f} of its long axis, vessels)"
        filled = solidity(mask, spacing_zyx)
        if filled < MIN_SOLIDITY:
            return f"branching (it fills {filled:.2f} of its convex hull, vessels)"
    return None


def _opened(mask: np.ndarray, distance: np.ndarray, spacing_zyx: tuple[float, float, float],
            radius_mm: float) -> np.ndarray:
    """Morphological opening of ``mask`` by a ball of ``radius_mm``, by distance transforms.

    ``distance`` is each voxel's distance (mm) to the mask's background (the erosion's transform).
    The dilation reaches half the finest voxel side further than the erosion, so that a ball's
    opening by a smaller ball keeps every voxel of it (voxel-centre distances fall short of the
    surface by that much).
    """
    inner = distance > radius_mm
    if not inner.any():
        return np.zeros_like(mask)
    reach = radius_mm + 0.5 * min(spacing_zyx)
    return (ndimage.distance_transform_edt(~np.pad(inner, 1), sampling=spacing_zyx) <= reach)[1:-1, 1:-1, 1:-1] & mask


def detached(mask: np.ndarray, spacing_zyx: tuple[float, float, float], centre_zyx: np.ndarray,
             search_mm: float) -> np.ndarray:
    """The lesion body at a detection, its attached vessels cut off (an empty mask when there is none).

    The body's inscribed radius is the mask's largest distance to its background within
    ``search_mm`` (at least :data:`BODY_SEARCH_MM`) of ``centre_zyx``; the mask is opened by a ball of
    :data:`OPENING_FRACTION` of it, and the opened component with the most voxels within the same
    distance of the centre is the body.

    Args:
        mask: a lesion's mask (its box).
        spacing_zyx: the scan's spacing.
        centre_zyx: the detection's centre in the box (voxel index, may be fractional).
        search_mm: how far from the centre the body may lie (the detection's radius).
    """
    if not mask.any():
        return mask
    grid = np.indices(mask.shape, dtype=np.float32)
    near = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre_zyx, spacing_zyx))) <= max(
        search_mm, BODY_SEARCH_MM)
    distance = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    body = distance[near & mask]
    if body.size == 0:
        return np.zeros_like(mask)
    opened = _opened(mask, distance, spacing_zyx, OPENING_FRACTION * float(body.max()))
    components, _ = ndimage.label(opened)
    labels_near = components[near & opened]
    if labels_near.size == 0:
        return np.zeros_like(mask)
    return components == np.bincount(labels_near).argmax()
