"""A small synthetic chest CT and the output folder a run would write for it, for the review tests.

The CT (80 x 70 x 40 voxels, x flipped so LPS and RAS differ in every axis sign) has two lungs
of -850 HU and three soft-tissue lesions of 40 HU. The findings are made the way the pipeline
makes them: each lesion's mask measured by ``measure_lesion`` and turned into a record by
``nodule_finding``, so re-measuring an unedited segment must give the machine's numbers back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.io.findings import (
    Densitometry,
    DetectionInfo,
    Emphysema,
    Findings,
    InputInfo,
    LungVolume,
    Malignancy,
    RunInfo,
    write_findings_json,
)
from lungai.io.segmentation import write_seg_nrrd
from lungai.pipeline.lesion_record import nodule_finding
from lungai.pipeline.operating_points import OPERATING_POINTS, is_categorised
from lungai.preprocessing.measurements import measure_lesion

SIZE_XYZ = (80, 70, 40)
SPACING_XYZ = (0.8, 0.8, 1.5)
LUNG_HU, LESION_HU, BODY_HU = -850, 40, 20


@dataclass(frozen=True)
class Lesion:
    """A spherical lesion: centre voxel (z, y, x), radius (mm), detection score (``None``: mass rule)."""

    centre_zyx: tuple[int, int, int]
    radius_mm: float
    score: float | None


#: 1 passes `specific`, 2 passes only `high`, 3 is a mass (no score, every operating point).
LESIONS = {
    1: Lesion((20, 30, 20), 4.0, 0.85),
    2: Lesion((12, 45, 25), 3.0, OPERATING_POINTS["high"].threshold + 0.005),
    3: Lesion((20, 35, 60), 16.0, None),
}


def make_grid() -> sitk.Image:
    """An empty int16 image with the case's geometry."""
    image = sitk.Image(list(SIZE_XYZ), sitk.sitkInt16)
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin((30.0, -20.0, -40.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def lesion_mask(lesion: Lesion) -> np.ndarray:
    """The lesion's ball on the grid, (z, y, x)."""
    z, y, x = np.indices(SIZE_XYZ[::-1], dtype=float)
    spacing = SPACING_XYZ[::-1]
    distance = sum(((axis - centre) * step) ** 2 for axis, centre, step in zip((z, y, x), lesion.centre_zyx, spacing))
    return distance <= lesion.radius_mm ** 2


def lung_labels() -> np.ndarray:
    """Right lung (label 1) on the image's left half in x (x is flipped), left lung (2) on the right."""
    voxels = np.zeros(SIZE_XYZ[::-1], dtype=np.uint8)
    voxels[3:37, 5:65, 4:39] = labels.LUNG_RIGHT.value
    voxels[3:37, 5:65, 41:78] = labels.LUNG_LEFT.value
    return voxels


def make_ct() -> sitk.Image:
    """The CT: body, lungs, lesions."""
    hu = np.full(SIZE_XYZ[::-1], BODY_HU, dtype=np.int16)
    hu[lung_labels() > 0] = LUNG_HU
    for lesion in LESIONS.values():
        hu[lesion_mask(lesion)] = LESION_HU
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(make_grid())
    return image


def label_image() -> sitk.Image:
    """Lungs, then lesion ``i`` as ``10 + i``."""
    voxels = lung_labels()
    for nodule_id, lesion in LESIONS.items():
        voxels[lesion_mask(lesion)] = labels.nodule(nodule_id).value
    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(make_grid())
    return image


def on_lps_grid(grid: sitk.Image, voxels: np.ndarray | None = None) -> Any:
    """``grid`` reoriented to LPS as the reader does; with ``voxels`` (on ``grid``), those voxels reoriented."""
    image = grid
    if voxels is not None:
        image = sitk.GetImageFromArray(voxels.astype(np.uint8))
        image.CopyInformation(grid)
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(grid.GetDirection())
    lps = image if orientation == "LPS" else sitk.DICOMOrient(image, "LPS")
    return lps if voxels is None else sitk.GetArrayFromImage(lps)


def machine_findings(ct: sitk.Image, lungs: np.ndarray | None = None,
                     lesions: dict[int, tuple[np.ndarray, float | None]] | None = None,
                     source: str = "case.nrrd") -> Findings:
    """The findings the pipeline would write for lesions (default the case's) on ``ct``.

    Measured, as the pipeline measures, on the grid reoriented to LPS (:func:`on_lps_grid`).

    Args:
        ct: the CT.
        lungs: its lung label array; default the case's.
        lesions: id -> (mask, detection score or ``None`` for the mass rule); default the case's.
        source: the scan's name.
    """
    lungs = lung_labels() if lungs is None else lungs
    if lesions is None:
        lesions = {nodule_id: (lesion_mask(lesion), lesion.score) for nodule_id, lesion in LESIONS.items()}
    lps = on_lps_grid(ct)
    hu, lungs = sitk.GetArrayViewFromImage(lps), on_lps_grid(ct, lungs)
    nodules = []
    for nodule_id, (mask, score) in lesions.items():
        measured = measure_lesion(on_lps_grid(ct, mask).astype(bool), hu, lungs, lps)
        nodule = nodule_finding(nodule_id, measured, lps, score, "blob" if score is not None else "mass")
        if is_categorised(nodule):
            estimate = Malignancy(0.2 * nodule_id, ["nodule_cnn2d", "resnet50_3d"])
            nodule = dataclasses.replace(nodule, malignancy=estimate)
        nodules.append(nodule)
    high = OPERATING_POINTS["high"]
    return Findings(
        input=InputInfo(source=source, format="nrrd", modality="CT", series_uid=None, size_xyz=ct.GetSize(),
                        spacing_xyz_mm=ct.GetSpacing()),
        lungs={"right": LungVolume(1000.0), "left": LungVolume(900.0), "total": LungVolume(1900.0)},
        emphysema=Emphysema({region: Densitometry(1.0, 10.0, 40.0, -900.0) for region in ("right", "left", "total")}),
        nodules=nodules,
        detection=DetectionInfo("high", high.threshold, high.sensitivity, high.expected_fp_per_scan, ["small ones"]),
        run=RunInfo(lungai_version="0.1.0", tasks=["lungs", "nodules", "malignancy", "emphysema"], device="cpu",
                    started_utc="2025-01-31T12:00:00Z"))


def write_case(folder: Path) -> Path:
    """The output folder of a run on the case: ``case.seg.nrrd`` and ``findings.json``."""
    folder.mkdir(parents=True)
    findings = machine_findings(make_ct())
    structures = labels.with_nodules(len(findings.nodules), [nodule.kind for nodule in findings.nodules])
    write_seg_nrrd(label_image(), structures, folder / "case.seg.nrrd")
    write_findings_json(findings, folder / "findings.json")
    return folder
