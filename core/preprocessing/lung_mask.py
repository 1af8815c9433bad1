"""Classical lung mask: threshold, airway removal, left/right split, closing.

The method follows the threshold-and-morphology lung extraction the source papers use to
limit the search space to lung tissue (``convlstm_nodule``: "threshold about -400 HU";
``resunet3d``: "lung parenchyma extracted by threshold + morphology first"):

1. Air below ``air_threshold_hu`` (about -400 HU) that is enclosed by the body in its axial
   slice is lung candidate; air connected to the slice border is outside the body. Candidate
   components that are small, or pure air inside (bowel or stomach gas), are dropped.
2. The trachea is found as a dark, tube-sized air section near the body midline in the upper
   slices; the airway tree is grown from it with a rising threshold until it would leak into
   the parenchyma, and removed with its wall rim. The bronchi inside the lungs come back in
   step 4; the trachea and the main bronchi in the mediastinum do not.
3. The lungs are the large remaining components. When the two lungs touch (anterior or
   posterior junction) they are eroded until they fall apart and every voxel is given back
   to the nearest core; if erosion never separates them they are cut at the mid-sagittal gap.
4. Each lung is closed with a ball (``closing_radius_mm``, 15 mm: nodules are at most 30 mm)
   so nodules that touch the chest wall stay inside, and holes (vessels, nodules) are filled
   in every axial slice. Masses much larger than a nodule that abut the mediastinum can stay
   outside the mask.

The work happens on a copy resampled to at most ``working_spacing_mm`` and reoriented to LPS;
the labels are resampled back to the input grid at the end. Right and left are decided in
physical LPS coordinates (+x points to the patient's left), never by voxel index.

Deviation from the papers: they give no parameters for the morphology; the defaults here were
chosen on a synthetic phantom and on scans outside the project's test patients.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai import labels
from lungai.errors import NoLungsFoundError

logger = logging.getLogger(__name__)

_IN_PLANE_4 = np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                        [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                        [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], dtype=bool)
"""In-plane 4-connectivity for 3D (z, y, x) arrays: every axial slice on its own."""


@dataclass(frozen=True)
class LungMaskConfig:
    """Parameters of the classical lung mask.

    Attributes:
        working_spacing_mm: coarsest (x, y, z) spacing the mask is computed at; finer scans are
            resampled to it, coarser axes are kept as they are.
        air_threshold_hu: voxels below this are air or lung.
        closing_radius_mm: radius of the ball each lung is closed with (keeps juxtapleural
            nodules inside).
        min_total_volume_ml: below this total lung volume the scan has no usable lungs.
        min_component_ml: air components smaller than this are never lung.
        gas_median_hu: air components whose interior median HU is below this are gas, not lung.
        second_lung_min_ratio: a second separate component counts as the other lung when its
            volume is at least this fraction of the largest.
        trachea_area_mm2: (min, max) cross-section of the trachea in an axial slice.
        trachea_max_offset_mm: how far from the body midline the trachea may be.
        trachea_max_median_hu: a trachea section is darker than this (median).
        airway_start_hu: first threshold the airway tree is grown with.
        airway_stop_hu: last threshold tried.
        airway_step_hu: threshold increment.
        airway_max_ml: an airway tree larger than this has leaked into the lungs.
        airway_max_jump_ml: a tree that grows by more than this from one threshold to the next
            has leaked into the lungs.
        split_max_erosion_mm: deepest erosion tried to separate two touching lungs.
        split_min_ratio: the smaller of two eroded cores must be at least this fraction of the
            larger one (and they must lie on either side of the midline) to count as two lungs.
        one_lung_max_fraction: a single unsplittable component with less than this fraction of
            its voxels across the midline is one lung, not two.
        partial_area_fraction: a lung cross-section at the first or last slice larger than this
            fraction of the largest cross-section means the scan cuts the lungs off.
    """

    working_spacing_mm: tuple[float, float, float] = (1.5, 1.5, 2.0)
    air_threshold_hu: float = -400.0
    closing_radius_mm: float = 15.0
    min_total_volume_ml: float = 500.0
    min_component_ml: float = 20.0
    gas_median_hu: float = -965.0
    second_lung_min_ratio: float = 0.2
    trachea_area_mm2: tuple[float, float] = (40.0, 900.0)
    trachea_max_offset_mm: float = 30.0
    trachea_max_median_hu: float = -900.0
    airway_start_hu: float = -950.0
    airway_stop_hu: float = -800.0
    airway_step_hu: float = 10.0
    airway_max_ml: float = 250.0
    airway_max_jump_ml: float = 100.0
    split_max_erosion_mm: float = 20.0
    split_min_ratio: float = 0.2
    one_lung_max_fraction: float = 0.1
    partial_area_fraction: float = 0.1


@dataclass
class LungMask:
    """A lung label image and its measurements.

    Attributes:
        labels: uint8 image on the input grid; ``labels.LUNG_RIGHT.value`` (1) for the right
            lung, ``labels.LUNG_LEFT.value`` (2) for the left, 0 elsewhere.
        right_volume_ml: right lung volume.
        left_volume_ml: left lung volume.
        warnings: problems the user should know about (lungs cut off by the scan, one lung).
    """

    labels: sitk.Image
    right_volume_ml: float
    left_volume_ml: float
    warnings: list[str] = field(default_factory=list)

    @property
    def total_volume_ml(self) -> float:
        """Volume of both lungs."""
        return self.right_volume_ml + self.left_volume_ml


@dataclass
class _Grid:
    """Geometry of the working volume (LPS-oriented) and where it lies in the scan.

    Attributes:
        image: a working-grid image; only its geometry is used.
        has_first_slice: the volume starts at the scan's first (most inferior) slice.
        has_last_slice: the volume ends at the scan's last (most superior) slice.
    """

    image: sitk.Image
    has_first_slice: bool = True
    has_last_slice: bool = True

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel spacing in mm in array order."""
        return tuple(reversed(self.image.GetSpacing()))

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL."""
        return float(np.prod(self.image.GetSpacing())) / 1000.0

    def physical_x(self, index_zyx: np.ndarray) -> float:
        """LPS x (mm) of a continuous (z, y, x) index."""
        point = self.image.TransformContinuousIndexToPhysicalPoint(
            [float(v) for v in reversed(index_zyx)])
        return point[0]


def segment_lungs(image: sitk.Image, config: LungMaskConfig | None = None) -> LungMask:
    """Segment the right and left lung of a chest CT.

    Args:
        image: 3D CT in HU (int16 expected), any direction and spacing. Not modified.
        config: parameters; the defaults suit chest CT from 0.5 to 5 mm.

    Returns:
        The lung labels on the input grid, per-lung volumes and warnings.

    Raises:
        NoLungsFoundError: no lung tissue of plausible size is in the scan.
        ValueError: the image is not a 3D scalar image.
    """
    cfg = config or LungMaskConfig()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("segment_lungs needs a 3D scalar CT image")
    start = time.perf_counter()
    grid, hu = _working_grid(image, cfg)
    outside = _outside_air(hu, cfg)
    midline_x = _midline_x(~outside)
    candidates = _lung_candidates(hu, (hu < cfg.air_threshold_hu) & ~outside, grid.voxel_ml, cfg)
    del outside
    if not candidates.any():
        raise _no_lungs(0.0, cfg)
    grid, (hu, candidates), midline_x = _crop(grid, (hu, candidates), midline_x,
                                              cfg.closing_radius_mm)
    candidates = _remove_airways(hu, candidates, grid, midline_x, cfg)
    del hu
    lungs, warnings = _separate_lungs(grid, candidates, midline_x, cfg)
    lungs = _close_and_fill(grid, lungs, cfg)
    total_ml = float(np.count_nonzero(lungs)) * grid.voxel_ml
    if total_ml < cfg.min_total_volume_ml:
        raise _no_lungs(total_ml, cfg)
    warnings += _partial_warnings(grid, lungs, cfg)

    label_image = _to_input_grid(lungs, grid, image)
    label_array = sitk.GetArrayViewFromImage(label_image)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    right_ml, left_ml = (np.count_nonzero(label_array == value) * voxel_ml
                         for value in (labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value))
    result = LungMask(label_image, right_volume_ml=float(right_ml), left_volume_ml=float(left_ml),
                      warnings=warnings)
    for warning in warnings:
        logger.warning(warning)
    logger.info("lungs: right %.0f mL, left %.0f mL in %.1f s", result.right_volume_ml,
                result.left_volume_ml, time.perf_counter() - start)
    return result


def _no_lungs(found_ml: float, cfg: LungMaskConfig) -> NoLungsFoundError:
    return NoLungsFoundError(
        f"no lungs found: {found_ml:.0f} mL of lung-like tissue, at least "
        f"{cfg.min_total_volume_ml:.0f} mL expected",
        "give a chest CT that covers both lungs")


def _working_grid(image: sitk.Image, cfg: LungMaskConfig) -> tuple[_Grid, np.ndarray]:
    """Reorient to LPS and resample to at most the working spacing.

    Returns:
        The working grid and its (z, y, x) int16 HU array.
    """
    oriented = sitk.DICOMOrient(image, "LPS")
    spacing = np.array(oriented.GetSpacing())
    new_spacing = np.maximum(spacing, cfg.working_spacing_mm)
    if np.allclose(new_spacing, spacing):
        resampled = sitk.Cast(oriented, sitk.sitkInt16)
    else:
        size = np.array(oriented.GetSize())
        new_size = np.maximum(np.round(size * spacing / new_spacing), 1).astype(int)
        direction = np.array(oriented.GetDirection()).reshape(3, 3)
        origin = np.array(oriented.GetOrigin()) + direction @ ((new_spacing - spacing) / 2.0)
        resampled = sitk.Resample(oriented, [int(v) for v in new_size], sitk.Transform(),
                                  sitk.sitkLinear, origin.tolist(), new_spacing.tolist(),
                                  oriented.GetDirection(), -1024.0, sitk.sitkInt16)
    return _Grid(resampled), sitk.GetArrayFromImage(resampled)


def _outside_air(hu: np.ndarray, cfg: LungMaskConfig) -> np.ndarray:
    """Air connected to the border of its axial slice: outside the body."""
    air = hu < cfg.air_threshold_hu
    components, _ = ndimage.label(air, structure=_IN_PLANE_4)
    border = np.unique(np.concatenate([components[:, 0, :].ravel(), components[:, -1, :].ravel(),
                                       components[:, :, 0].ravel(), components[:, :, -1].ravel()]))
    return np.isin(components, border[border > 0])


def _midline_x(body: np.ndarray) -> float:
    """Mean x index of the body: the mid-sagittal plane."""
    columns = np.count_nonzero(body, axis=(0, 1))
    return float(np.average(np.arange(columns.size), weights=columns))


def _lung_candidates(hu: np.ndarray, enclosed: np.ndarray, voxel_ml: float,
                     cfg: LungMaskConfig) -> np.ndarray:
    """Enclosed air components large enough to be lung and with lung density inside.

    Pure air (bowel or stomach gas, a pneumothorax, a trachea cut off from the lungs) has an
    interior median near -1000 HU; lung parenchyma, even emphysematous, stays well above
    ``gas_median_hu``.
    """
    components, count = ndimage.label(enclosed)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    interior = components * ndimage.binary_erosion(enclosed)
    keep = np.zeros(count + 1, dtype=bool)
    for index in np.nonzero(sizes * voxel_ml >= cfg.min_component_ml)[0]:
        inside = hu[interior == index]
        if inside.size and np.median(inside) >= cfg.gas_median_hu:
            keep[index] = True
        else:
            logger.debug("air component of %.0f mL is gas, not lung", sizes[index] * voxel_ml)
    return keep[components]


def _crop(grid: _Grid, arrays: tuple[np.ndarray, np.ndarray], midline_x: float,
          margin_mm: float) -> tuple[_Grid, tuple[np.ndarray, np.ndarray], float]:
    """Crop the working volume to the candidates (``arrays[1]``) plus a margin.

    Returns:
        (cropped grid, cropped arrays, midline x index in the cropped volume).
    """
    candidates = arrays[1]
    spacing = np.array(grid.spacing_zyx)
    margin = np.ceil(margin_mm / spacing).astype(int) + 2
    occupied = np.nonzero(candidates)
    low = np.maximum([axis.min() for axis in occupied] - margin, 0)
    high = np.minimum([axis.max() + 1 for axis in occupied] + margin, candidates.shape)
    (z0, y0, x0), (z1, y1, x1) = low, high
    cropped = _Grid(grid.image[int(x0):int(x1), int(y0):int(y1), int(z0):int(z1)],
                    has_first_slice=z0 == 0, has_last_slice=z1 == candidates.shape[0])
    box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    return cropped, (arrays[0][box], arrays[1][box]), midline_x - x0


def _distance_to(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Euclidean distance in mm from every voxel to the nearest voxel of ``mask`` (0 inside)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    signed = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                          useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(signed), 0.0)


def _remove_airways(hu: np.ndarray, candidates: np.ndarray, grid: _Grid, midline_x: float,
                    cfg: LungMaskConfig) -> np.ndarray:
    """Remove the airway tree (trachea, bronchi) and its wall rim from the candidates."""
    seed = _trachea_seed(hu, candidates, grid, midline_x, cfg)
    if seed is None:
        logger.info("no trachea found in the upper half of the lungs")
        return candidates
    airways = _grow_airways(hu, candidates, seed, grid.voxel_ml, cfg)
    airways = ndimage.binary_dilation(airways, mask=candidates)
    logger.debug("airways: %.0f mL removed", np.count_nonzero(airways) * grid.voxel_ml)
    return candidates & ~airways


def _trachea_seed(hu: np.ndarray, candidates: np.ndarray, grid: _Grid, midline_x: float,
                  cfg: LungMaskConfig) -> np.ndarray | None:
    """An axial section of the trachea: tube-sized dark air near the midline, high up.

    Searches the slices of the upper half of the candidates from the top down and returns the
    largest qualifying section of the first slice that has one, as a (z, y, x) mask.
    """
    _, sy, sx = grid.spacing_zyx
    min_area, max_area = (a / (sy * sx) for a in cfg.trachea_area_mm2)
    max_offset = cfg.trachea_max_offset_mm / sx
    occupied = np.nonzero(candidates.any(axis=(1, 2)))[0]
    top, bottom = occupied[-1], occupied[0]
    for z in range(top, top - (top - bottom) // 2 - 1, -1):
        sections, count = ndimage.label(candidates[z])
        areas = np.bincount(sections.ravel(), minlength=count + 1)
        best, best_area = 0, 0
        for index in np.nonzero((areas >= min_area) & (areas <= max_area))[0]:
            if index == 0 or areas[index] <= best_area:
                continue
            section = sections == index
            if (abs(np.nonzero(section)[1].mean() - midline_x) <= max_offset
                    and np.median(hu[z][section]) < cfg.trachea_max_median_hu):
                best, best_area = int(index), int(areas[index])
        if best:
            seed = np.zeros_like(candidates)
            seed[z] = sections == best
            return seed
    return None


def _grow_airways(hu: np.ndarray, candidates: np.ndarray, seed: np.ndarray, voxel_ml: float,
                  cfg: LungMaskConfig) -> np.ndarray:
    """Grow the airway tree from the trachea seed with a rising threshold until it leaks.

    At each threshold the airway is the connected air below it that touches the seed; the
    last tree before the volume explodes into the lung parenchyma is kept.
    """
    airways = np.zeros_like(candidates)
    previous_ml = 0.0
    for threshold in np.arange(cfg.airway_start_hu, cfg.airway_stop_hu + 1, cfg.airway_step_hu):
        dark = (hu < threshold) & candidates
        components, _ = ndimage.label(dark)
        touching = np.unique(components[seed & dark])
        grown = np.isin(components, touching[touching > 0])
        volume_ml = np.count_nonzero(grown) * voxel_ml
        if volume_ml > cfg.airway_max_ml or volume_ml - previous_ml > cfg.airway_max_jump_ml:
            logger.debug("airway growth leaks at %.0f HU (%.0f mL)", threshold, volume_ml)
            break
        airways, previous_ml = grown, volume_ml
    return airways


def _separate_lungs(grid: _Grid, candidates: np.ndarray, midline_x: float,
                    cfg: LungMaskConfig) -> tuple[np.ndarray, list[str]]:
    """Label the right and left lung among the candidate components.

    Returns:
        (uint8 label array, warnings).
    """
    components, count = ndimage.label(candidates)
    if count == 0:
        raise _no_lungs(0.0, cfg)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    first = components == order[0]
    if count > 1 and _is_other_lung(components == order[1], first,
                                    sizes[order[1]] / sizes[order[0]], cfg):
        parts = [first, components == order[1]]
    else:
        parts = _split_component(grid, first, midline_x, cfg)
    result = np.zeros(candidates.shape, dtype=np.uint8)
    if len(parts) == 1:
        side = _side_of(grid, parts[0], midline_x)
        name = "right" if side == labels.LUNG_RIGHT.value else "left"
        result[parts[0]] = side
        return result, [f"only one lung found (the {name}); the other is missing or collapsed"]
    x_a, x_b = (grid.physical_x(np.array(ndimage.center_of_mass(p))) for p in parts)
    right, left = (parts[0], parts[1]) if x_a < x_b else (parts[1], parts[0])
    result[right] = labels.LUNG_RIGHT.value
    result[left] = labels.LUNG_LEFT.value
    return result, []


def _is_other_lung(second: np.ndarray, first: np.ndarray, ratio: float,
                   cfg: LungMaskConfig) -> bool:
    """Whether a second component is the other lung (not stomach or bowel gas below it)."""
    if ratio < cfg.second_lung_min_ratio:
        return False
    z_first = np.nonzero(first.any(axis=(1, 2)))[0]
    z_second = np.nonzero(second.any(axis=(1, 2)))[0]
    return bool(z_second[-1] >= (z_first[0] + z_first[-1]) / 2)


def _side_of(grid: _Grid, part: np.ndarray, midline_x: float) -> int:
    """Label value of a lone lung from its position relative to the body midline."""
    centre = np.array(ndimage.center_of_mass(part))
    midline = centre.copy()
    midline[2] = midline_x
    is_right = grid.physical_x(centre) < grid.physical_x(midline)
    return labels.LUNG_RIGHT.value if is_right else labels.LUNG_LEFT.value


def _split_component(grid: _Grid, component: np.ndarray, midline_x: float,
                     cfg: LungMaskConfig) -> list[np.ndarray]:
    """Split touching lungs: erode until two cores appear, then give voxels to the nearest core.

    Falls back to a cut at the mid-sagittal gap when erosion does not separate them, and
    returns the component whole when it lies on one side of the body only (one lung).
    """
    spacing = grid.spacing_zyx
    depth = _distance_to(~component, spacing)
    step = min(spacing)
    for threshold in np.arange(step, cfg.split_max_erosion_mm, step):
        cores, count = ndimage.label(depth > threshold)
        if count < 2:
            continue
        sizes = np.bincount(cores.ravel())
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < cfg.split_min_ratio * sizes[first]:
            continue
        x_first, x_second = (ndimage.center_of_mass(cores == i)[2] for i in (first, second))
        if (x_first - midline_x) * (x_second - midline_x) < 0:
            logger.debug("lungs separated by %.1f mm erosion", threshold)
            nearer_first = (_distance_to(cores == first, spacing)
                            <= _distance_to(cores == second, spacing))
            return [component & nearer_first, component & ~nearer_first]
    left_share = float(np.mean(np.nonzero(component)[2] > midline_x))
    if min(left_share, 1.0 - left_share) < cfg.one_lung_max_fraction:
        return [component]
    logger.info("lungs not separable by erosion; cutting at the mid-sagittal gap")
    return _cut_at_midline(component, midline_x, spacing[2])


def _cut_at_midline(component: np.ndarray, midline_x: float, sx: float) -> list[np.ndarray]:
    """Cut every axial slice at the column with the least lung within 40 mm of the midline."""
    half_band = max(1, int(round(40.0 / sx)))
    low = max(0, int(midline_x) - half_band)
    high = min(component.shape[2], int(midline_x) + half_band + 1)
    columns = np.count_nonzero(component[:, :, low:high], axis=1)  # (z, x)
    cut = low + np.argmin(columns, axis=1)
    low_side = np.arange(component.shape[2])[None, None, :] < cut[:, None, None]
    return [component & low_side, component & ~low_side]


def _close_and_fill(grid: _Grid, lungs: np.ndarray, cfg: LungMaskConfig) -> np.ndarray:
    """Close each lung with a ball, fill holes in every axial slice, resolve overlaps.

    Where the grown lungs overlap, the voxel goes to the lung it was nearer to.
    """
    spacing = grid.spacing_zyx
    radius = cfg.closing_radius_mm
    grown: dict[int, np.ndarray] = {}
    distances: dict[int, np.ndarray] = {}
    for value in (labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value):
        lung = lungs == value
        if not lung.any():
            continue
        distances[value] = _distance_to(lung, spacing)
        dilated = distances[value] <= radius
        closed = _distance_to(~dilated, spacing) > radius
        grown[value] = ndimage.binary_fill_holes(closed | lung, structure=_IN_PLANE_4)
    result = np.zeros_like(lungs)
    for value, mask in grown.items():
        result[mask] = value
    if len(grown) == 2:
        right, left = labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value
        both = grown[right] & grown[left]
        result[both] = np.where(distances[right][both] <= distances[left][both], right, left)
    return result


def _partial_warnings(grid: _Grid, lungs: np.ndarray, cfg: LungMaskConfig) -> list[str]:
    """Warn when the lungs run into the first or last slice of the scan."""
    areas = np.count_nonzero(lungs, axis=(1, 2))
    limit = cfg.partial_area_fraction * areas.max()
    warnings = []
    if grid.has_last_slice and areas[-1] > limit:
        warnings.append("the lungs are cut off at the top of the scan: volumes and densitometry "
                        "cover only part of the lungs")
    if grid.has_first_slice and areas[0] > limit:
        warnings.append("the lungs are cut off at the bottom of the scan: volumes and "
                        "densitometry cover only part of the lungs")
    return warnings


def _to_input_grid(lungs: np.ndarray, grid: _Grid, image: sitk.Image) -> sitk.Image:
    """Resample the working labels onto the input grid (linear per lung, cut at one half)."""
    result = np.zeros(tuple(reversed(image.GetSize())), dtype=np.uint8)
    for value in (labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value):
        indicator = sitk.GetImageFromArray(np.where(lungs == value, 254, 0).astype(np.uint8))
        indicator.CopyInformation(grid.image)
        resampled = sitk.Resample(indicator, image, sitk.Transform(), sitk.sitkLinear, 0,
                                  sitk.sitkUInt8)
        result[sitk.GetArrayViewFromImage(resampled) >= 127] = value
    label_image = sitk.GetImageFromArray(result)
    label_image.CopyInformation(image)
    return label_image
