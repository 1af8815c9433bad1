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
- **Location**: the lung holding most nodule voxels (the nearest lung when none), and the zone
  (upper / middle / lower third of that lung's craniocaudal extent) holding the centroid. Zones,
  not lobes: the lung mask has no fissures, and "middle third" read like "middle lobe".
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
        location: e.g. ``"right lung, upper zone"``.
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


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary mask (uint8); empty stays empty."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return (labels > 0).astype(np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    return (labels == int(np.argmax(sizes)) + 1).astype(np.uint8)


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


def _grown(box: tuple[slice, ...], margin_mm: float, spacing_zyx: tuple[float, ...],
           shape: tuple[int, ...]) -> tuple[slice, ...]:
    margin = [int(np.ceil(margin_mm / s)) for s in spacing_zyx]
    return tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, shape))


def _is_whole(box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    return all(b.start == 0 and b.stop == n for b, n in zip(box, shape))


def _placed(mask: np.ndarray, box: tuple[slice, ...], region: tuple[slice, ...]) -> np.ndarray:
    """The box's mask on the grid of ``region`` (a box that contains it)."""
    out = np.zeros(tuple(r.stop - r.start for r in region), bool)
    out[tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))] = mask
    return out


def distance_to_pleura(mask: np.ndarray, box: tuple[slice, slice, slice], lung_labels: np.ndarray,
                       spacing_zyx: tuple[float, float, float]) -> float:
    """Gap (mm) between the nodule and the edge of the lung mask (see the module docstring).

    Voxels are boxes: the gap runs from the nearest nodule voxel's edge to the nearest
    outside voxel's edge, so a nodule with a voxel face-adjacent to the outside has gap 0.
    The search starts in a region :data:`PLEURA_SEARCH_MM` around the nodule and grows until
    the gap found is nearer than the region's margin (then no voxel beyond it can be nearer).

    Args:
        mask: the nodule's mask inside ``box``.
        box: the nodule's bounding box (slices) on the scan grid.
        lung_labels: lung labels on the scan grid.
        spacing_zyx: voxel spacing.

    Returns:
        The gap, >= 0 (inf when the whole grid is lung).
    """
    margin_mm = PLEURA_SEARCH_MM
    while True:
        region = _grown(box, margin_mm, spacing_zyx, lung_labels.shape)
        local = _placed(mask, box, region)
        gap = _gap_mm((lung_labels[region] > 0) | local, local, spacing_zyx)
        if gap < margin_mm or _is_whole(region, lung_labels.shape):
            return gap
        margin_mm *= 2


def lung_z_ranges(lung_labels: np.ndarray) -> dict[int, tuple[int, int]]:
    """First and last axial slice (z index) of each lung label present."""
    ranges = {}
    for structure in (labels.LUNG_RIGHT, labels.LUNG_LEFT):
        slices = np.nonzero((lung_labels == structure.value).any(axis=(1, 2)))[0]
        if slices.size:
            ranges[structure.value] = (int(slices.min()), int(slices.max()))
    return ranges


def _nearest_lung(centre: np.ndarray, box: tuple[slice, ...], lung_labels: np.ndarray,
                  spacing_zyx: tuple[float, ...]) -> int | None:
    """The lung label of the lung voxel nearest ``centre`` (searching outwards from ``box``)."""
    margin_mm = PLEURA_SEARCH_MM
    while True:
        region = _grown(box, margin_mm, spacing_zyx, lung_labels.shape)
        voxels = np.nonzero(lung_labels[region])
        if voxels[0].size:
            offsets = [r.start for r in region]
            distance = sum(((v + o - c) * s) ** 2 for v, o, c, s in zip(voxels, offsets, centre, spacing_zyx))
            nearest = int(np.argmin(distance))
            return int(lung_labels[region][tuple(v[nearest] for v in voxels)])
        if _is_whole(region, lung_labels.shape):
            return None
        margin_mm *= 2


def location(mask: np.ndarray, box: tuple[slice, slice, slice], lung_labels: np.ndarray,
             centroid_index: np.ndarray, spacing_zyx: tuple[float, float, float],
             z_ranges: dict[int, tuple[int, int]] | None = None) -> str:
    """``"<side> lung, <upper|middle|lower> zone"``; see the module docstring.

    Args:
        mask: the nodule's mask inside ``box``.
        box: its bounding box on the scan grid.
        lung_labels: lung label array (``labels.LUNG_RIGHT`` / ``LUNG_LEFT`` values).
        centroid_index: the nodule centroid, continuous ``(z, y, x)`` index.
        spacing_zyx: voxel spacing (for the nearest lung of a nodule outside both).
        z_ranges: :func:`lung_z_ranges` of ``lung_labels`` (computed when ``None``).
    """
    values = lung_labels[box][mask]
    counts = {s.value: int(np.count_nonzero(values == s.value)) for s in (labels.LUNG_RIGHT, labels.LUNG_LEFT)}
    if max(counts.values()) > 0:
        side_value: int | None = max(counts, key=counts.__getitem__)
    else:
        side_value = _nearest_lung(centroid_index, box, lung_labels, spacing_zyx)
    if side_value is None:
        return "outside the lungs"
    side = "right" if side_value == labels.LUNG_RIGHT.value else "left"
    low, high = (z_ranges if z_ranges is not None else lung_z_ranges(lung_labels))[side_value]
    # LPS z grows towards the head: the upper third has the largest z indices
    relative = 0.5 if high == low else (float(centroid_index[0]) - low) / (high - low)
    third = "upper" if relative >= 2 / 3 else "middle" if relative >= 1 / 3 else "lower"
    return f"{side} lung, {third} zone"


def measure_lesion(mask: np.ndarray, hu: np.ndarray, lung_labels: np.ndarray, image: sitk.Image,
                   box: tuple[slice, slice, slice] | None = None,
                   z_ranges: dict[int, tuple[int, int]] | None = None) -> LesionMeasurements:
    """Measure one lesion.

    Args:
        mask: boolean lesion mask, not empty: on the whole scan grid, or inside ``box``.
        hu: the scan's HU array.
        lung_labels: the lung label array (same grid).
        image: the scan (geometry for world coordinates; LPS, axis-aligned as ``read_scan`` gives).
        box: where ``mask`` lies on the scan grid; ``None`` when ``mask`` covers the whole grid.
        z_ranges: :func:`lung_z_ranges` of ``lung_labels``, to reuse over many lesions.

    Returns:
        The measurements.

    Raises:
        ValueError: if the mask is empty.
    """
    if not mask.any():
        raise ValueError("cannot measure an empty mask")
    x, y, z = image.GetSpacing()
    spacing_zyx = (float(z), float(y), float(x))
    offset = [0, 0, 0] if box is None else [b.start for b in box]
    tight = ndimage.find_objects(mask.astype(np.uint8))[0]
    sub_mask = mask[tight]
    lesion_box = (slice(tight[0].start + offset[0], tight[0].stop + offset[0]),
                  slice(tight[1].start + offset[1], tight[1].stop + offset[1]),
                  slice(tight[2].start + offset[2], tight[2].stop + offset[2]))
    sub_hu = hu[lesion_box]
    index = np.array([np.mean(axis) for axis in np.nonzero(sub_mask)]) + [b.start for b in lesion_box]
    centroid = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index[::-1]])
    diameters = axial_diameters(sub_mask, spacing_zyx)
    kind, fraction, solid = classify_type(sub_hu, sub_mask)
    solid_mm = None
    if kind == "part-solid":
        solid_mm = round(axial_diameters(largest_component(solid).astype(bool), spacing_zyx).mean_mm, 1)
    return LesionMeasurements(
        centroid_lps=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        diameters=AxialDiameters(round(diameters.long_axis_mm, 1), round(diameters.short_axis_mm, 1),
                                 diameters.slice_index + lesion_box[0].start),
        volume_mm3=round(float(np.count_nonzero(sub_mask)) * float(np.prod(spacing_zyx)), 1),
        mean_hu=round(float(sub_hu[sub_mask].mean()), 1),
        type=kind,
        solid_fraction=round(fraction, 3),
        solid_component_mm=solid_mm,
        distance_to_pleura_mm=round(distance_to_pleura(sub_mask, lesion_box, lung_labels, spacing_zyx), 1),
        location=location(sub_mask, lesion_box, lung_labels, index, spacing_zyx, z_ranges),
    )
