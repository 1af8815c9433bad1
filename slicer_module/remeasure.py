"""Measuring a lesion again after its segment was edited (Slicer's Segment Editor).

The lesion's segment, the lungs' segments and the CT are taken from the scene on the scan's
LPS grid (:mod:`lungai.slicer.scene_images`) and measured by the pipeline's own code:
:func:`lungai.preprocessing.measurements.measure_lesion` for size, volume, density, type, pleural
distance and location, :func:`lungai.pipeline.lesion_record.nodule_finding` for the record (a lesion
over 30 mm becomes a mass), and the Lung-RADS size rule for lesions that get a category. The
detection score, the operating point it passed and the malignancy estimate stay the machine's:
they belong to the detection, and the malignancy models are not run again.

Nothing here imports torch: reviewing and re-measuring stay light inside Slicer.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.io.findings import Nodule
from lungai.pipeline.lesion_record import nodule_finding
from lungai.preprocessing.measurements import LesionMeasurements, measure_lesion
from lungai.slicer.mrml import LoadedResults
from lungai.slicer.scene_images import segment_mask, volume_image

logger = logging.getLogger(__name__)


def lung_labels(segmentation_node: Any, grid: sitk.Image) -> np.ndarray:
    """The lungs' label array on ``grid`` (right lung 1, left lung 2) from their segments."""
    voxels = np.zeros(sitk.GetArrayViewFromImage(grid).shape, dtype=np.uint8)
    contained = segmentation_node.GetSegmentation()
    for structure in (labels.LUNG_RIGHT, labels.LUNG_LEFT):
        if contained.GetSegment(structure.key) is not None:
            voxels[segment_mask(segmentation_node, structure.key, grid)] = structure.value
    return voxels


def measured_record(machine: Nodule, measured: LesionMeasurements, grid: sitk.Image) -> Nodule:
    """A re-measured lesion's findings record, keeping the machine record's detection, malignancy and characteristics.

    Args:
        machine: the lesion's record as the run wrote it.
        measured: the new measurements.
        grid: the scan's grid (for the centroid's voxel index).
    """
    nodule = nodule_finding(machine.id, measured, grid, machine.detection_score, machine.detected_by)
    return dataclasses.replace(nodule, malignancy=machine.malignancy, characteristics=machine.characteristics)


def remeasure(results: LoadedResults, nodule_id: int) -> Nodule:
    """Measure a lesion's (edited) segment again, on the analysed CT, and show the new measurements.

    Args:
        results: the loaded results under review, with their volume.
        nodule_id: the lesion's id.

    Returns:
        The lesion's new record (also put into ``results.review``, marked as edited).

    Raises:
        KeyError: no lesion has this id, or its segment was deleted.
        ValueError: the results have no volume, or the segment is empty (delete-all in the Segment
            Editor: reject the lesion instead).
    """
    if results.volume is None:
        raise ValueError("the results were loaded without their CT volume, so lesions cannot be re-measured")
    machine = results.review.nodules[nodule_id]
    grid = volume_image(results.volume)
    mask = segment_mask(results.segmentation, labels.nodule(nodule_id).key, grid)
    if not mask.any():
        raise ValueError(f"the segment of lesion {nodule_id} is empty; reject the lesion instead")
    hu = sitk.GetArrayViewFromImage(grid)
    measured = measure_lesion(mask, hu, lung_labels(results.segmentation, grid), grid)
    record = measured_record(machine, measured, grid)
    results.review.replace(record)
    results.refresh()
    logger.info("lesion %d re-measured: %.1f x %.1f mm, %.0f mm3, %s", nodule_id, record.long_axis_mm,
                record.short_axis_mm, record.volume_mm3, record.type)
    return record
