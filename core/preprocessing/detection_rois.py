"""The detector's regions of interest: a fixed grid around each candidate, cut from the scan.

The false-positive classifier (:mod:`lungai.pipeline.detection`) and its training data
(:mod:`lungai.data.detection_dataset`) cut the same ROIs, so the geometry lives here, below both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from lungai.preprocessing.roi import RoiSpec, normalize_hu

DETECTION_ROI = RoiSpec((10, 32, 32), (2.5, 1.6, 1.6))
"""The classifier's input around a candidate: (z, y, x) voxels and mm, centred on it."""


def roi_grid(centre_lps_mm: Sequence[float], spec: RoiSpec = DETECTION_ROI) -> sitk.Image:
    """An empty LPS-aligned image whose grid is the ROI centred on a point (for resampling)."""
    size_xyz = [int(v) for v in spec.shape[::-1]]
    spacing_xyz = [float(v) for v in spec.spacing_mm()[::-1]]
    origin = np.asarray(centre_lps_mm, float) - (np.asarray(size_xyz) - 1) / 2.0 * np.asarray(spacing_xyz)
    grid = sitk.Image(size_xyz, sitk.sitkUInt8)
    grid.SetSpacing(spacing_xyz)
    grid.SetOrigin(origin.tolist())
    return grid


def extract_rois(image: sitk.Image, centres_lps_mm: Sequence[Sequence[float]],
                 spec: RoiSpec = DETECTION_ROI) -> np.ndarray:
    """Cut the classifier's input around each centre (linear interpolation, -1000 HU outside).

    Args:
        image: CT in HU.
        centres_lps_mm: ROI centres, LPS mm.
        spec: the ROI (shape and spacing, both z, y, x).

    Returns:
        ``(N, z, y, x)`` float32, HU-normalised as :func:`lungai.preprocessing.roi.normalize_hu` does.
    """
    out = np.empty((len(centres_lps_mm), *spec.shape), np.float32)
    for i, centre in enumerate(centres_lps_mm):
        roi = sitk.Resample(image, roi_grid(centre, spec), sitk.Transform(), sitk.sitkLinear, -1000.0,
                            sitk.sitkFloat32)
        out[i] = normalize_hu(sitk.GetArrayViewFromImage(roi))
    return out
