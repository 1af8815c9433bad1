"""Segmenting a nodule where the other scan says it should be.

A prior nodule without a current partner may still be there, missed by the detector (or the
other way round). Before it is called ``resolved`` (or ``new``), the pipeline's own lesion
segmentation runs at its position mapped into the other scan:

1. A detection is made at the mapped point with the other scan's mean radius
   (:func:`lungai.pipeline.nodules.segment_detection`: ``resunet3d`` in a VOI grown as needed,
   the component at the point).
2. The mask is cut to the lesion search region and must pass the pipeline's plausibility checks
   (:func:`lungai.pipeline.nodules.implausibility`) as it is: unlike the nodule
   stage (:func:`lungai.pipeline.nodules.plausible_lesion`), no body is cut out of an implausible
   mask here, where a structure is sought at a point rather than at a detection (on the simulated
   test pairs that step paired a new nodule with a structure at its place on the prior). It loses the
   voxels of the scan's existing lesions.
3. It counts as found when something remains whose mean diameter is at least
   :attr:`MappedConfig.min_found_mm`, at least :attr:`MappedConfig.min_size_ratio` and at most
   :attr:`MappedConfig.max_size_ratio` times the other scan's, and whose centroid lies within
   ``max(MappedConfig.min_distance_mm, MappedConfig.distance_per_diameter x the other scan's mean
   diameter)`` of the mapped point; it
   is then measured like any lesion (:func:`~lungai.preprocessing.measurements.measure_lesion`).

The checks in step 3 are stricter than the matching gate: a segmentation model run at a point
always finds some structure (a vessel, an unrelated opacity), and pairing a new or resolved
nodule with it is worse than missing a pair. They were set on the tune pairs of
``lungai data simulate-follow-up`` (docs/follow-up.md): of the segmentations there that found
something at a truth nodule's position, the two at nodules present on both scans lay 0.2 and
5.4 mm from the mapped point at 0.87 and 0.84 of the expected diameter; the four at the
positions of new or resolved nodules lay 2.6 to 10.1 mm away at 0.35 to 0.95 of it, each
outside the distance or the size bound. A nodule that shrank (or grew) to under 0.7 of its
diameter is therefore reported resolved (or new) when the detector misses it on one scan.

The model runs as in the pipeline's preview (:func:`lungai.pipeline.nodules.segment_detection`):
once per tile, unmirrored, at the trained spacing alone, an eighth or less of the full
inference's model calls; the mask only has to say whether the nodule is there and where its
region lies (the change is measured by :mod:`lungai.followup.volumetry`). The VOI starts at the
other scan's size and grows at most :attr:`MappedConfig.max_growth` times:
the size is known, and a mask that keeps reaching the VOI's sides has leaked into a vessel or the
chest wall (unbounded, such a segmentation took minutes of tiles). The upper size bound (1.6 times
the diameter, four times the volume) keeps such a leak from being paired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk

from lungai.errors import WeightsError
from lungai.inference.voi_segmentation import VoiInference, recorded_inference
from lungai.io.volume_arrays import spacing_zyx
from lungai.pipeline.detection import Detection
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.nodules import DEFAULT_THRESHOLD, SEGMENTATION_MODEL, implausibility, segment_detection
from lungai.preprocessing.lesion_region import lesion_region
from lungai.preprocessing.measurements import LesionMeasurements, measure_lesion

logger = logging.getLogger(__name__)

#: Radius (mm) assumed for the VOI when the other scan's nodule is smaller.
MIN_RADIUS_MM = 2.0


@dataclass(frozen=True)
class MappedConfig:
    """When a segmentation at a mapped position is the nodule (see the module docstring, step 3).

    Attributes:
        min_found_mm: smallest mean diameter.
        min_size_ratio: smallest mean diameter as a fraction of the other scan's.
        max_size_ratio: largest mean diameter as a multiple of the other scan's.
        min_distance_mm: the centroid may always lie this far from the mapped point.
        distance_per_diameter: and this many times the other scan's mean diameter.
        max_growth: how often the VOI may grow.
    """

    min_found_mm: float = 3.0
    min_size_ratio: float = 0.7
    max_size_ratio: float = 1.6
    min_distance_mm: float = 4.0
    distance_per_diameter: float = 0.3
    max_growth: int = 1

    def accepts(self, expected_mm: float, found_mm: float, distance_mm: float) -> bool:
        """Whether a segmentation of ``found_mm`` at ``distance_mm`` from the point is the nodule."""
        return (max(self.min_found_mm, self.min_size_ratio * expected_mm) <= found_mm
                <= self.max_size_ratio * max(expected_mm, self.min_found_mm)
                and distance_mm <= max(self.min_distance_mm, self.distance_per_diameter * expected_mm))


@dataclass
class Found:
    """A lesion segmented at a mapped position.

    Attributes:
        measured: its measurements.
        box: ``(z, y, x)`` slices of the scan grid.
        mask: its mask inside ``box``.
    """

    measured: LesionMeasurements
    box: tuple[slice, slice, slice]
    mask: np.ndarray


@dataclass
class Segmenter:
    """Segments at given points of one scan; the lesion search region is computed on first use.

    Attributes:
        models: the run's model store (``resunet3d``).
        image: the scan.
        lesion_labels: its label array (lungs 1 and 2, lesions from 10); found lesions are added to it.
        config: when a segmentation is the nodule.
    """

    models: ModelStore
    image: sitk.Image
    lesion_labels: np.ndarray
    config: MappedConfig = field(default_factory=MappedConfig)
    _region: np.ndarray | None = None
    _inference: VoiInference | None = None

    def _prepare(self) -> tuple[np.ndarray, VoiInference]:
        if self._inference is None:
            try:
                recorded = recorded_inference(self.models.inference(SEGMENTATION_MODEL), DEFAULT_THRESHOLD)
                self._inference = replace(recorded, mirror=False, tile_mirror=False, scales=(1.0,))
            except ValueError as exc:
                raise WeightsError(f"{SEGMENTATION_MODEL} weights: {exc}",
                                   "reinstall or re-release the weights") from None
        if self._region is None:
            lungs = sitk.GetImageFromArray(np.where(self.lesion_labels < 10, self.lesion_labels, 0).astype(np.uint8))
            lungs.CopyInformation(self.image)
            self._region = lesion_region(self.image, lungs).region
        return self._region, self._inference

    def segment_at(self, point_lps: np.ndarray, expected_diameter_mm: float, label_value: int) -> Found | None:
        """Segment at ``point_lps`` (see the module docstring); a found lesion is labelled ``label_value``."""
        region, inference = self._prepare()
        hu = sitk.GetArrayViewFromImage(self.image)
        spacing = spacing_zyx(self.image)
        radius = max(MIN_RADIUS_MM, expected_diameter_mm / 2.0)
        centre = (float(point_lps[0]), float(point_lps[1]), float(point_lps[2]))
        segmented = segment_detection(self.models.get(SEGMENTATION_MODEL), hu, self.image,
                                      Detection(centre, radius, None), inference, region, self.config.max_growth)
        mask, box = segmented.mask, segmented.box
        where = f"segmentation at {np.round(centre, 1).tolist()} (expected {expected_diameter_mm:.1f} mm)"
        reason = "empty" if not mask.any() else implausibility(segmented, region, spacing)
        mask = mask & region[box] & (self.lesion_labels[box] < 10)
        if reason is None and not mask.any():
            reason = "only voxels of other lesions"
        if reason is not None:
            logger.info("%s: nothing (%s)", where, reason)
            return None
        lungs = np.where(self.lesion_labels < 10, self.lesion_labels, 0)
        measured = measure_lesion(mask, hu, lungs, self.image, box)
        distance = float(np.linalg.norm(np.asarray(measured.centroid_lps) - np.asarray(centre)))
        size = measured.diameters.mean_mm
        if not self.config.accepts(expected_diameter_mm, size, distance):
            logger.info("%s: %.1f mm, %.1f mm away: not the nodule", where, size, distance)
            return None
        logger.info("%s: found %.1f mm, %.1f mm away", where, size, distance)
        self.lesion_labels[box][mask] = label_value
        return Found(measured, box, mask)
