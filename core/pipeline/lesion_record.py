"""A segmented lesion's findings record: nodule or mass, with how it was found.

Torch-free, so the Slicer module can re-measure an edited segment without loading torch.
"""

from __future__ import annotations

import SimpleITK as sitk

from lungai.io.findings import Centroid, Nodule
from lungai.pipeline.lung_rads import lung_rads_category
from lungai.pipeline.operating_points import earns_category, passed_operating_point
from lungai.preprocessing.measurements import LesionMeasurements

#: A lesion whose long axis exceeds this (mm) is a mass (Fleischner glossary: a nodule is at most 3 cm).
MASS_FROM_MM = 30.0


def nodule_finding(index: int, measured: LesionMeasurements, image: sitk.Image, score: float | None,
                   detected_by: str) -> Nodule:
    """The findings record of lesion ``index`` (1-based): a mass when its long axis exceeds :data:`MASS_FROM_MM`,
    with the strictest operating point its score passes and, when that earns one
    (:func:`~lungai.pipeline.operating_points.earns_category`), the Lung-RADS size-rule category.

    Args:
        index: the lesion's number.
        measured: its measurements.
        image: the scan (for the centroid's voxel index).
        score: its detection score (``None`` for a mass found by the thickness rule).
        detected_by: ``blob``, ``ground_glass`` or ``mass`` (the detection's source).
    """
    point = passed_operating_point(score)
    lung_rads = (lung_rads_category(measured.type, measured.diameters.mean_mm, measured.solid_component_mm)
                 if earns_category(detected_by, point) else None)
    return Nodule(id=index, centroid=Centroid.from_lps(measured.centroid_lps, image),
                  long_axis_mm=measured.diameters.long_axis_mm, short_axis_mm=measured.diameters.short_axis_mm,
                  volume_mm3=measured.volume_mm3, mean_hu=measured.mean_hu, type=measured.type,
                  detection_score=None if score is None else round(float(score), 4),
                  location=measured.location, lung_rads=lung_rads,
                  distance_to_pleura_mm=measured.distance_to_pleura_mm,
                  solid_component_mm=measured.solid_component_mm,
                  kind="mass" if measured.diameters.long_axis_mm > MASS_FROM_MM else "nodule",
                  detected_by=detected_by, operating_point=point)
