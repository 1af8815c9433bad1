"""Measurements of one segmented lesion on the scan grid: size, density, type, position.

Conventions (all on the LPS scan grid that :func:`lungai.io.reader.read_scan` returns):

- **Long and short axis** (Lung-RADS): on each axial slice the cross-section's longest
  diameter is its largest caliper (Feret) width; the long axis is the largest of these over
  the slices, and the short axis is the caliper width perpendicular to it on the same slice.
  Widths are measured over the union of the pixel squares (pixel-centre extent plus one
  pixel's projection), at 1 degree steps, in millimetres with the real in-plane spacing.
- **Type** from the HU profile: a voxel is *solid* at or above :data:`SOLID_HU` (-300 HU, the
  usual low-attenuation threshold for the solid component of subsolid nodules, e.g. Lee et al.,
  PLOS One 2018, doi:10.1371/journal.pone.0205490). The solid fraction is taken over the mask
  eroded by one voxel in-plane (the border voxels are partial-volume averages with the lung
  around them; the whole mask is used when erosion leaves nothing). Fraction >=
  :data:`SOLID_FRACTION` (0.8): solid; below :data:`GROUND_GLASS_FRACTION` (0.1): ground-glass;
  otherwise part-solid. The part-solid nodule's solid component is measured like the nodule
  (mean of its long and short axis), for the Lung-RADS part-solid rule.
- **Distance to pleura**: the gap (mm) between the nodule's edge and the edge of the lung
  mask, voxels taken as boxes (nearest voxel-centre distance to a voxel outside lungs and
  nodule, less one voxel's width along that direction); 0 for a nodule that reaches the
  mask's edge (juxtapleural). The lung mask's edge is the pleura and the mediastinal surface
  alike.
- **Location**: the lung holding most nodule voxels (the nearest lung when none), and the
  third (upper / middle / lower) of that lung's craniocaudal extent holding the centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai import labels

#: HU at and above which a voxel counts as solid tissue.
SOLID_HU = -300.0
#: Solid fraction at and above which a nodule is solid.
SOLID_FRACTION = 0.8
#: Solid fraction below which a nodule is ground-glass.
GROUND_GLASS_FRACTION = 0.1
#: Search margin (mm) around a nodule for the pleural distance before the whole mask is used.
PLEURA_SEARCH_MM = 40.0

_ANGLES = np.deg2rad(np.arange(0.0, 180.0, 1.0))


@dataclass(frozen=True)
class AxialDiameters:
    """Lung-RADS diameters of a mask.

    Attributes:
        long_axis_mm: longest in-plane diameter over all axial slices.
        short_axis_mm: width perpendicular to the long axis on the same slice.
        slice_index: the axial slice (z index) where they were measured.
    """

    long_axis_mm: float
    short_axis_mm: float
    slice_index: int

    @property
    def mean_mm(self) -> float:
        """Mean of long and short axis (the Lung-RADS size)."""
        return (self.long_axis_mm + self.short_axis_mm) / 2.0


@dataclass(frozen=True)
class LesionMeasurements:
    """Everything measured on one lesion mask.

    Attributes:
        centroid_lps: mask centroid, LPS mm.
        diameters: long and short axis.
        volume_mm3: mask volume.
        mean_hu: mean HU inside the mask.
        type: ``solid``, ``part-solid`` or ``ground-glass``.
        solid_fraction: fraction of (eroded) mask voxels at or above :data:`SOLID_HU`.
        solid_component_mm: mean diameter of the solid part (part-solid nodules), else ``None``.
        distance_to_pleura_mm: shortest distance to the lung mask's edge.
        location: e.g. ``"right lung, upper third"``.
    """

    centroid_lps: tuple[float, float, float]
    diameters: AxialDiameters
    volume_mm3: float
    mean_hu: float
    type: str
    solid_fraction: float
    solid_component_mm: float | None
    distance_to_pleura_mm: float
    location: str


def _caliper_widths(points: np.ndarray, pixel: tuple[float, float]) -> np.ndarray:
    """Width of a set of pixel squares (centres ``points`` (n, 2) as (y, x) mm) at each of ``_ANGLES``."""
    directions = np.stack([np.sin(_ANGLES), np.cos(_ANGLES)], axis=1)  # (angles, (y, x))
    projections = points @ directions.T
    square = np.abs(directions[:, 0]) * pixel[0] + np.abs(directions[:, 1]) * pixel[1]
    return projections.max(axis=0) - projections.min(axis=0) + square


def _boundary_points(section: np.ndarray, spacing_yx: tuple[float, float]) -> np.ndarray:
    """(y, x) mm of the pixels on the edge of a 2D mask (they carry its caliper widths)."""
    edge = section & ~ndimage.binary_erosion(section)
    rows, cols = np.nonzero(edge)
    return np.stack([rows * spacing_yx[0], cols * spacing_yx[1]], axis=1)


def axial_diameters(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> AxialDiameters:
    """Long and short axis of a mask in the axial plane (Lung-RADS convention).

    Args:
        mask: ``(z, y, x)`` boolean mask, not empty.
        spacing_zyx: voxel spacing in mm.

    Returns:
        The diameters and the slice they were measured on.

    Raises:
        ValueError: if the mask is empty.
    """
    slices = np.nonzero(mask.any(axis=(1, 2)))[0]
    if slices.size == 0:
        raise ValueError("cannot measure an empty mask")
    pixel = (float(spacing_zyx[1]), float(spacing_zyx[2]))
    best: AxialDiameters | None = None
    for k in slices:
        widths = _caliper_widths(_boundary_points(mask[k], pixel), pixel)
        longest = int(np.argmax(widths))
        if best is None or widths[longest] > best.long_axis_mm:
            perpendicular = (longest + len(_ANGLES) // 2) % len(_ANGLES)
            best = AxialDiameters(float(widths[longest]), float(widths[perpendicular]), int(k))
    assert best is not None
    return best


def classify_type(hu: np.ndarray, mask: np.ndarray) -> tuple[str, float, np.ndarray]:
    """Solid / part-solid / ground-glass from the HU profile (see the module docstring).

    Args:
        hu: ``(z, y, x)`` HU around the mask.
        mask: boolean mask on the same grid, not empty.

    Returns:
        The type, the solid fraction and the solid voxels (boolean, within ``mask``).
    """
    core = ndimage.binary_erosion(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    if not core.any():
        core = mask
    solid = mask & (hu >= SOLID_HU)
    fraction = float(np.count_nonzero(solid & core)) / float(np.count_nonzero(core))
    if fraction >= SOLID_FRACTION:
        return "solid", fraction, solid
    if fraction < GROUND_GLASS_FRACTION:
        return "ground-glass", fraction, solid
    return "part-solid", fraction, solid


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())[1:]
    return components == (int(np.argmax(sizes)) + 1)


def _gap_mm(inside: np.ndarray, mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> float:
    """Smallest edge-to-edge gap between ``mask`` voxels and voxels outside ``inside`` (inf if none)."""
    if inside.all():
        return float("inf")
    distances, nearest = ndimage.distance_transform_edt(inside, sampling=spacing_zyx, return_indices=True)
    voxels = np.nonzero(mask)
    vectors = np.stack([(nearest[axis][voxels] - voxels[axis]) * spacing_zyx[axis] for axis in range(3)], axis=1)
    lengths = distances[voxels]
    # half a voxel of the nodule and half a voxel of the outside, projected on the connecting direction
    widths = np.abs(vectors) @ np.asarray(spacing_zyx) / np.maximum(lengths, 1e-9)
    return float(np.maximum(lengths - widths, 0.0).min())


def distance_to_pleura(mask: np.ndarray, lungs: np.ndarray, spacing_zyx: tuple[float, float, float],
                       box: tuple[slice, slice, slice]) -> float:
    """Gap (mm) between the nodule and the edge of the lung mask (see the module docstring).

    Voxels are boxes: the gap runs from the nearest nodule voxel's edge to the nearest
    outside voxel's edge, so a nodule with a voxel face-adjacent to the outside has gap 0.
    The search starts in a box :data:`PLEURA_SEARCH_MM` around the nodule and grows until
    the gap found is nearer than the box's margin (then no voxel beyond it can be nearer).

    Args:
        mask: nodule mask on the scan grid.
        lungs: lung mask (either lung) on the scan grid.
        spacing_zyx: voxel spacing.
        box: the nodule's bounding box (slices) on the scan grid.

    Returns:
        The gap, >= 0 (inf when the whole grid is lung).
    """
    inside = lungs | mask
    margin_mm = PLEURA_SEARCH_MM
    while True:
        margin = [int(np.ceil(margin_mm / s)) for s in spacing_zyx]
        crop = tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, mask.shape))
        gap = _gap_mm(inside[crop], mask[crop], spacing_zyx)
        whole = all(c.start == 0 and c.stop == n for c, n in zip(crop, mask.shape))
        if gap < margin_mm or whole:
            return gap
        margin_mm *= 2


def location(mask: np.ndarray, lung_labels: np.ndarray, centroid_index_z: float) -> str:
    """``"<side> lung, <upper|middle|lower> third"``; see the module docstring.

    Args:
        mask: nodule mask.
        lung_labels: lung label array (``labels.LUNG_RIGHT`` / ``LUNG_LEFT`` values).
        centroid_index_z: the nodule centroid's z index (continuous).
    """
    values = lung_labels[mask]
    counts = {s.value: int(np.count_nonzero(values == s.value)) for s in (labels.LUNG_RIGHT, labels.LUNG_LEFT)}
    if max(counts.values()) == 0:
        any_lung = lung_labels > 0
        if not any_lung.any():
            return "outside the lungs"
        _, nearest = ndimage.distance_transform_edt(~any_lung, return_indices=True)
        point = tuple(int(np.round(np.mean(np.nonzero(mask)[axis]))) for axis in range(3))
        side_value = int(lung_labels[tuple(nearest[axis][point] for axis in range(3))])
    else:
        side_value = max(counts, key=counts.__getitem__)
    side = "right" if side_value == labels.LUNG_RIGHT.value else "left"
    z_slices = np.nonzero((lung_labels == side_value).any(axis=(1, 2)))[0]
    low, high = float(z_slices.min()), float(z_slices.max())
    # LPS z grows towards the head: the upper third has the largest z indices
    relative = 0.5 if high == low else (centroid_index_z - low) / (high - low)
    third = "upper" if relative >= 2 / 3 else "middle" if relative >= 1 / 3 else "lower"
    return f"{side} lung, {third} third"


def measure_lesion(mask: np.ndarray, hu: np.ndarray, lung_labels: np.ndarray, image: sitk.Image) -> LesionMeasurements:
    """Measure one lesion.

    Args:
        mask: ``(z, y, x)`` boolean lesion mask on the scan grid, not empty.
        hu: the scan's HU array (same grid).
        lung_labels: the lung label array (same grid).
        image: the scan (geometry for world coordinates; LPS, axis-aligned as ``read_scan`` gives).

    Returns:
        The measurements.

    Raises:
        ValueError: if the mask is empty.
    """
    if not mask.any():
        raise ValueError("cannot measure an empty mask")
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    sub_mask, sub_hu = mask[box], hu[box]
    index = np.array([np.mean(axis) for axis in np.nonzero(sub_mask)]) + [b.start for b in box]
    centroid = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index[::-1]])
    diameters = axial_diameters(sub_mask, spacing_zyx)
    kind, fraction, solid = classify_type(sub_hu, sub_mask)
    solid_mm = None
    if kind == "part-solid":
        solid_mm = round(axial_diameters(_largest_component(solid), spacing_zyx).mean_mm, 1)
    return LesionMeasurements(
        centroid_lps=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        diameters=AxialDiameters(round(diameters.long_axis_mm, 1), round(diameters.short_axis_mm, 1),
                                 diameters.slice_index + box[0].start),
        volume_mm3=round(float(np.count_nonzero(sub_mask)) * float(np.prod(spacing_zyx)), 1),
        mean_hu=round(float(sub_hu[sub_mask].mean()), 1),
        type=kind,
        solid_fraction=round(fraction, 3),
        solid_component_mm=solid_mm,
        distance_to_pleura_mm=round(distance_to_pleura(mask, lung_labels > 0, spacing_zyx, box), 1),
        location=location(mask, lung_labels, float(index[0])),
    )
