"""The nodule stage: each detection segmented by ``resunet3d``, pasted into the scan, measured.

For every detection (strongest first) a training-like VOI is cut around it
(:func:`lungai.inference.nodule_roi.voi_box`, sized from the detection's radius) and
``resunet3d`` predicts a soft mask there (:func:`lungai.inference.voi_segmentation.predict_voi_probability`:
mirrored, tiled when the model's ROI cuts the nodule, averaged over the checkpoint's scales). The
mask is the connected component of ``probability >= threshold`` at (or nearest to) the detection,
within the detection's neighbourhood; the threshold and scales are the ones chosen on the
validation split and stored with the checkpoint (``config.json`` ``inference``), 0.5 and the
trained spacing alone without them. When the mask reaches a
side of its VOI that is not the scan's edge, the VOI is grown to the mask's extent and the
prediction repeated (at most :data:`MAX_GROWTH` times), so a detector's radius estimate that is
too small does not cut the nodule.

Masses (:mod:`lungai.preprocessing.lesion_region`) are segmented first, by the mass rule, then
the blob detections. A blob detection's mask is not grown once it is bound to be dropped (see
below), which spares minutes of tiles on hilar vessels. Before each full prediction, a preview
(one pass at the trained spacing, unmirrored: 1/16 of the model calls of the shipped settings)
tells whether the VOI's mask is already bound to be dropped; if so the preview is the result
(it is then dropped as the full mask would be), else the full prediction runs as described, so
every kept lesion's mask is the full prediction's. The full prediction reuses what the preview
already ran (:class:`~lungai.inference.voi_segmentation.VoiPrediction`): the tiles at the trained
spacing, unmirrored in both when the checkpoint's ``tile_mirror`` is off.

With the lesion search region, a segmentation mostly outside it (hilum, mediastinum), a tubular
one, or a blob detection's that grew far beyond its blob is dropped
(:func:`~lungai.preprocessing.lesion_region.lesion_plausibility`), unless its body with the
attached vessels cut off passes the same checks (:func:`plausible_lesion`: a nodule whose mask ran
on along its vessels is kept as its body; so is one whose attachments make up most of its
plausible mask), and every mask is cut to the region. A segmentation mostly outside the region
whose part outside lies beyond the mediastinum (chest wall, diaphragm) is a juxtapleural nodule
that ran into the wall: it is cut at the region's edge and kept when the part inside passes the
checks (:func:`plausible_lesion`); its VOI is not grown, and it gets the full prediction, not the
preview. Masks are pasted into one label grid in
that order: a voxel already claimed stays with the earlier lesion, so lesions never overlap; a
detection left without voxels is dropped. The survivors are measured
(:mod:`lungai.preprocessing.measurements`), numbered 1, 2, ... (masses first, then by decreasing
detection score), and a lesion over
:data:`~lungai.pipeline.lesion_record.MASS_FROM_MM` is a mass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from torch import nn

from lungai.inference.nodule_roi import Voi, voi_box
from lungai.inference.voi_segmentation import VoiInference, VoiPrediction
from lungai.io.volume_arrays import spacing_zyx
from lungai.pipeline.config import SEGMENTATION_MODEL
from lungai.pipeline.detection import Detection
from lungai.preprocessing.lesion_region import (
    MAX_OUTSIDE_FRACTION,
    detached,
    lesion_plausibility,
    outside_fraction,
    overgrown,
    wall_spill,
)
from lungai.preprocessing.measurements import axial_diameters
from lungai.preprocessing.roi import roi_spec

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
#: How often a VOI may grow when the mask reaches its side.
MAX_GROWTH = 2
#: A mask component counts as the detection's when it lies within this many radii of its centre.
NEAR_RADII = 1.5
#: Replace a segmentation by its body when cutting its attachments off makes it plausible or when the
#: attachments are most of it (:func:`plausible_lesion`, :func:`~lungai.preprocessing.lesion_region.detached`).
DETACH_VESSELS = True
#: A plausible segmentation whose body holds less than this fraction of its voxels is its body.
MIN_BODY_FRACTION = 0.5


@dataclass(frozen=True)
class SegmentedNodule:
    """One nodule's mask on the scan grid (as a box and the mask inside it).

    Attributes:
        detection: the detection it came from.
        box: ``(z, y, x)`` slices of the scan grid.
        mask: boolean mask of the box's shape.
    """

    detection: Detection
    box: tuple[slice, slice, slice]
    mask: np.ndarray


def _centre_index(image: sitk.Image, lps: Sequence[float]) -> np.ndarray:
    return np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in lps]))[::-1]


def _component_at(mask: np.ndarray, centre: np.ndarray, spacing: tuple[float, float, float],
                  radius_mm: float) -> np.ndarray:
    """The component of ``mask`` holding the voxel nearest ``centre`` within ``NEAR_RADII`` radii."""
    components, count = ndimage.label(mask)
    if count == 0:
        return mask
    voxels = np.nonzero(components)
    distance = np.sqrt(sum(((v - c) * s) ** 2 for v, c, s in zip(voxels, centre, spacing)))
    nearest = int(np.argmin(distance))
    if distance[nearest] > NEAR_RADII * max(radius_mm, 2.0):
        return np.zeros_like(mask)
    return components == components[voxels[0][nearest], voxels[1][nearest], voxels[2][nearest]]


def _touching_sides(mask: np.ndarray, voi: Voi, shape: tuple[int, int, int]) -> list[int]:
    """Axes along which the mask reaches a VOI side that is not the scan's edge."""
    axes = []
    for axis in range(3):
        profile = np.asarray(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        side = voi.box[axis]
        if (profile[0] and side.start > 0) or (profile[-1] and side.stop < shape[axis]):
            axes.append(axis)
    return axes


def _first_extent(detection: Detection) -> np.ndarray:
    """The VOI's starting extent (mm): a mass's rough extent, else the blob's diameter."""
    if detection.extent_mm_zyx is not None:
        return np.asarray(detection.extent_mm_zyx, float)
    return np.full(3, 2.0 * detection.radius_mm)


def _doomed(mask: np.ndarray, voi: Voi, region: np.ndarray | None, detection: Detection,
            spacing: tuple[float, float, float]) -> bool:
    """Whether the mask will be dropped however far it grows: mostly outside the lesion search
    region, or a blob detection's mask already :func:`~lungai.preprocessing.lesion_region.overgrown` (growing
    it would cost minutes of tiles for nothing)."""
    if region is None or not mask.any():
        return False
    if outside_fraction(mask, voi.box, region) > MAX_OUTSIDE_FRACTION:
        return True
    return detection.source == "blob" and overgrown(axial_diameters(mask, spacing).long_axis_mm, detection.radius_mm)


def _preview(prediction: VoiPrediction, voi: Voi, local_centre: np.ndarray, spacing: tuple[float, float, float],
             detection: Detection, inference: VoiInference, region: np.ndarray | None,
             lungs: np.ndarray | None = None) -> np.ndarray | None:
    """The preview mask when it is already bound to be dropped (:func:`_doomed`), else ``None``.

    A mask that may be a juxtapleural nodule cut at the wall (:func:`_into_wall`) is not bound to
    be dropped.

    The preview runs once at the trained spacing, unmirrored (tiles too); with settings that are
    already that cheap there is no preview. Its tiles are those of the full prediction at the
    trained spacing when ``inference.tile_mirror`` is off, and ``prediction`` keeps them for it.
    """
    cheap = replace(inference, mirror=False, tile_mirror=False, scales=(1.0,))
    if region is None or cheap == inference:
        return None
    probability = prediction.probability(cheap)
    mask = _component_at(probability >= inference.threshold, local_centre, spacing, detection.radius_mm)
    if not _doomed(mask, voi, region, detection, spacing) or _into_wall(mask, voi.box, region, lungs, detection):
        return None
    return mask


def _into_wall(mask: np.ndarray, box: tuple[slice, slice, slice], region: np.ndarray | None,
               lungs: np.ndarray | None, detection: Detection) -> bool:
    """Whether a blob or ground-glass detection's mask ran into the chest wall or diaphragm
    (:func:`~lungai.preprocessing.lesion_region.wall_spill`; never without the lung labels)."""
    return (lungs is not None and region is not None and detection.source != "mass" and bool(mask.any())
            and wall_spill(mask, box, region, lungs))


def segment_detection(model: nn.Module, hu: np.ndarray, image: sitk.Image, detection: Detection,
                      inference: VoiInference, region: np.ndarray | None = None,
                      max_growth: int = MAX_GROWTH, lungs: np.ndarray | None = None) -> SegmentedNodule:
    """Segment one detection (see the module docstring); the mask may come back empty.

    Args:
        model: ``resunet3d``.
        hu: the scan's HU.
        image: the scan (geometry).
        detection: what to segment.
        inference: the mask's probability threshold, mirroring (8 model inputs per ROI instead
            of 1, in one call), tile mirroring and scales (the checkpoint's,
            :func:`~lungai.inference.voi_segmentation.recorded_inference`).
        region: the lesion search region (scan grid); a mask mostly outside it is not grown
            (it follows a hilar or mediastinal structure, and growing it costs minutes of tiles).
        max_growth: how often the VOI may grow (:data:`MAX_GROWTH`; 0 when the lesion's size is
            known, as at a position mapped from another scan).
        lungs: the scan's lung labels; with them, a mask that ran into the chest wall gets the full
            prediction (see :func:`_preview`).
    """
    spec = roi_spec(SEGMENTATION_MODEL)
    spacing = spacing_zyx(image)
    shape = (hu.shape[0], hu.shape[1], hu.shape[2])
    centre = _centre_index(image, detection.centre_lps_mm)
    extent = _first_extent(detection)
    for attempt in range(max_growth + 1):
        voi = voi_box(centre, extent, spacing, shape)
        local_centre = centre - [s.start for s in voi.box]
        prediction = VoiPrediction(model, hu[voi.box], spacing, spec)
        preview = _preview(prediction, voi, local_centre, spacing, detection, inference, region, lungs)
        if preview is not None:
            return SegmentedNodule(detection, voi.box, preview)
        probability = prediction.probability(inference)
        mask = _component_at(probability >= inference.threshold, local_centre, spacing, detection.radius_mm)
        grow = _touching_sides(mask, voi, hu.shape) if mask.any() else []
        if not grow or attempt == max_growth or _doomed(mask, voi, region, detection, spacing):
            break
        bbox = ndimage.find_objects(mask.astype(np.uint8))[0]
        mask_extent = np.array([(b.stop - b.start + 2) * s for b, s in zip(bbox, spacing)])
        centre = np.array([voi.box[a].start + (bbox[a].start + bbox[a].stop - 1) / 2 for a in range(3)])
        extent = np.maximum(extent, mask_extent) * np.where(np.isin(np.arange(3), grow), 1.5, 1.0)
        logger.debug("nodule at %s reaches its VOI along axes %s; growing it", detection.centre_lps_mm, grow)
    return SegmentedNodule(detection, voi.box, mask)


def _priority(detection: Detection) -> tuple[int, float, float]:
    """Masses first (thickest first), then blob detections by decreasing score."""
    if detection.source == "mass":
        return (0, -detection.radius_mm, detection.centre_lps_mm[2])
    return (1, -(detection.score or 0.0), detection.centre_lps_mm[2])


def implausibility(nodule: SegmentedNodule, region: np.ndarray, spacing: tuple[float, float, float]) -> str | None:
    """:func:`~lungai.preprocessing.lesion_region.lesion_plausibility` of a segmented detection (a blob
    detection's radius bounds its growth): why it cannot be a lung lesion, or ``None``."""
    detection = nodule.detection
    return lesion_plausibility(nodule.mask, nodule.box, region, spacing,
                               axial_diameters(nodule.mask, spacing).long_axis_mm,
                               detection.radius_mm if detection.source == "blob" else None)


def plausible_lesion(nodule: SegmentedNodule, image: sitk.Image, region: np.ndarray,
                     spacing: tuple[float, float, float],
                     lungs: np.ndarray | None = None) -> SegmentedNodule | None:
    """The segmented detection as a lung lesion, or ``None`` (logged) when it cannot be one.

    A blob or ground-glass detection's segmentation is replaced by its body with the attached
    vessels cut off (:func:`~lungai.preprocessing.lesion_region.detached`) when the whole
    segmentation is not plausible or the body holds less than :data:`MIN_BODY_FRACTION` of its
    voxels, provided the body is plausible. Failing that, with the lung labels ``lungs``, a segmentation
    that ran into the chest wall or diaphragm
    (:func:`~lungai.preprocessing.lesion_region.wall_spill`) is replaced by its part in the region
    at the detection, provided that part is plausible. A segmentation that is not plausible
    otherwise is dropped. Masses (the mass rule's own segmentation) are only checked.
    """
    detection = nodule.detection
    where = tuple(round(v, 1) for v in detection.centre_lps_mm)
    reason = implausibility(nodule, region, spacing)
    if DETACH_VESSELS and detection.source != "mass":
        centre = _centre_index(image, detection.centre_lps_mm) - [b.start for b in nodule.box]
        body = replace(nodule, mask=detached(nodule.mask, spacing, centre, detection.radius_mm))
        voxels, whole = np.count_nonzero(body.mask), np.count_nonzero(nodule.mask)
        if voxels and (reason is not None or voxels < MIN_BODY_FRACTION * whole) and (
                implausibility(body, region, spacing) is None):
            logger.info("%s detection at %s: kept without its attachments (%d of %d voxels)%s", detection.source,
                        where, voxels, whole, "" if reason is None else f"; the whole segmentation: {reason}")
            return body
    if reason is None:
        return nodule
    if (outside_fraction(nodule.mask, nodule.box, region) > MAX_OUTSIDE_FRACTION
            and _into_wall(nodule.mask, nodule.box, region, lungs, detection)):
        centre = _centre_index(image, detection.centre_lps_mm) - [b.start for b in nodule.box]
        cut = replace(nodule, mask=_component_at(nodule.mask & region[nodule.box], centre, spacing,
                                                 detection.radius_mm))
        if cut.mask.any() and implausibility(cut, region, spacing) is None:
            logger.info("%s detection at %s: cut at the chest wall (%d of %d voxels); the whole segmentation: %s",
                        detection.source, where, np.count_nonzero(cut.mask), np.count_nonzero(nodule.mask), reason)
            return cut
    logger.info("%s detection at %s dropped: %s", detection.source, where, reason)
    return None


MassSegmenter = Callable[[Detection], SegmentedNodule]
"""Segments a mass detection (the pipeline passes :func:`lungai.preprocessing.lesion_region.mass_mask`)."""


def segment_detections(model: nn.Module, hu: np.ndarray, image: sitk.Image, detections: Sequence[Detection],
                       inference: VoiInference = VoiInference(), region: np.ndarray | None = None,
                       mass_segmenter: MassSegmenter | None = None,
                       on_segmented: Callable[[int, int], None] | None = None,
                       lungs: np.ndarray | None = None) -> list[SegmentedNodule]:
    """Segment every detection, drop what is not a lung lesion, and resolve overlaps.

    Masses are segmented first (by ``mass_segmenter`` when given, else like a nodule), then blob
    detections by decreasing score; an earlier lesion keeps its voxels. With a search region,
    masks are cut to it (no lesion reaches into the mediastinum) and
    :func:`~lungai.preprocessing.lesion_region.lesion_plausibility` drops hilar, mediastinal,
    tubular and overgrown segmentations.

    ``on_segmented(done, total)`` is called after each detection (progress). With the scan's lung
    labels ``lungs``, a segmentation that ran into the chest wall is cut there (:func:`plausible_lesion`).

    Returns:
        The non-empty lesions, in the order they were segmented.
    """
    spacing = spacing_zyx(image)
    taken = np.zeros(hu.shape, bool)
    kept: list[SegmentedNodule] = []
    for done, detection in enumerate(sorted(detections, key=_priority), start=1):
        if detection.source == "mass" and mass_segmenter is not None:
            nodule = mass_segmenter(detection)
        else:
            nodule = segment_detection(model, hu, image, detection, inference, region, lungs=lungs)
        if on_segmented is not None:
            on_segmented(done, len(detections))
        where = tuple(round(v, 1) for v in detection.centre_lps_mm)
        if region is not None and nodule.mask.any():
            checked = plausible_lesion(nodule, image, region, spacing, lungs)
            if checked is None:
                continue
            nodule = replace(checked, mask=checked.mask & region[checked.box])
        nodule = replace(nodule, mask=nodule.mask & ~taken[nodule.box])
        if not nodule.mask.any():
            logger.info("%s detection at %s: empty mask, dropped", detection.source, where)
            continue
        taken[nodule.box] |= nodule.mask
        kept.append(nodule)
    return kept
