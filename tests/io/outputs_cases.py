"""Real CT with synthetic lesions for the output-writer tests (SEG, report, seg.nrrd).

The writers must not depend on the detector, so the cases put spherical "nodules" and a
"mass" (lesion 3, its kind set to ``mass``: the writers name and code it from the kind) into the
real lungs of a real scan: the masks go into the label image and the CT
gets soft-tissue values inside them (so the report's crops show a lesion inside the outline).
The findings are measured from those masks.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lungai import __version__, labels
from lungai.io.findings import (
    REGIONS,
    Centroid,
    Characteristics,
    Densitometry,
    Emphysema,
    Findings,
    InputInfo,
    LungRads,
    LungVolume,
    Malignancy,
    Nodule,
    RunInfo,
)
from lungai.io.reader import read_scan
from lungai.io.volume import CTVolume
from lungai.preprocessing.densitometry import measure_densitometry
from lungai.preprocessing.lung_mask import segment_lungs

LIDC_0001_ZIP = Path("lidc_scans/LIDC-IDRI-0001/dicom.zip")
PET_CT_ZIP = Path("lung_pet_ct_dx/A0001/dicom.zip")
#: Nodule radii (mm); nodule 1 goes into the right lung, nodule 2 into the left.
NODULE_RADII_MM = (6.0, 3.5)
#: Radius (mm) of lesion 3, the mass (right lung).
MASS_RADIUS_MM = 9.0
LESION_HU = 30
#: The structures of a case: the lungs' and its three lesions (nodule 1, nodule 2, mass 3).
CASE_STRUCTURES = labels.with_nodules(3, ["nodule", "nodule", "mass"])


@dataclass
class Case:
    """A scan read by LungAI, a label image with lungs, two nodules and a mass, and its findings."""

    ct: CTVolume
    label_image: sitk.Image
    findings: Findings


def require_program(*names: str, package: str) -> str:
    """The path of the first of ``names`` on PATH; skips without it (fails under CI, which must check).

    Args:
        names: program names to look for.
        package: the Debian package that provides it (``make test`` installs it).
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"{names[0]} not installed (Debian package {package}; make test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def extract_slices(archive: Path, folder: Path, count: int) -> Path:
    """Copy ``count`` consecutive slices from the middle of a zipped DICOM series into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        names = [name for name in zf.namelist() if name.endswith(".dcm")]
        positions = sorted((float(pydicom.dcmread(io.BytesIO(zf.read(name)), stop_before_pixels=True,
                                                  specific_tags=["ImagePositionPatient"]).ImagePositionPatient[2]),
                            name) for name in names)
        start = (len(positions) - count) // 2
        for _, name in positions[start:start + count]:
            (folder / Path(name).name).write_bytes(zf.read(name))
    return folder


def build_case(scan: Path) -> Case:
    """Read a real scan, segment its lungs and add two nodules and a mass inside them."""
    ct = read_scan(scan)
    lungs = segment_lungs(ct.image)
    label_voxels = sitk.GetArrayFromImage(lungs.labels).astype(np.uint8)
    hu = sitk.GetArrayFromImage(ct.image)
    spacing_zyx = np.asarray(ct.image.GetSpacing()[::-1])
    placed: list[tuple[np.ndarray, float]] = []
    nodules = []
    for index, (lung, radius) in enumerate(zip((labels.LUNG_RIGHT, labels.LUNG_LEFT), NODULE_RADII_MM), start=1):
        ball = _place_ball(label_voxels == lung.value, placed, radius, spacing_zyx)
        label_voxels[ball] = labels.nodule(index).value
        hu[ball] = LESION_HU
        nodules.append(_nodule(index, ball, ct.image, lung.name.lower()))
    mass_ball = _place_ball(label_voxels == labels.LUNG_RIGHT.value, placed, MASS_RADIUS_MM, spacing_zyx)
    label_voxels[mass_ball] = labels.nodule(3).value
    hu[mass_ball] = LESION_HU
    nodules.append(_nodule(3, mass_ball, ct.image, "right lung", kind="mass"))
    ct_image = sitk.GetImageFromArray(hu)
    ct_image.CopyInformation(ct.image)
    ct.image = ct_image
    label_image = sitk.GetImageFromArray(label_voxels)
    label_image.CopyInformation(ct.image)
    return Case(ct=ct, label_image=label_image, findings=_findings(ct, lungs, nodules))


def _place_ball(lung: np.ndarray, placed: list[tuple[np.ndarray, float]], radius_mm: float,
                spacing_zyx: np.ndarray) -> np.ndarray:
    """A ball of ``radius_mm`` as deep inside ``lung`` as possible, clear of the balls ``placed``.

    ``placed`` holds (centre voxel, radius mm) pairs; the new ball is appended to it.
    """
    # Depth inside the lung on a grid of about 2 mm (fast enough for whole scans), padded so
    # that the scan's first and last slices count as the lung's edge.
    step = np.maximum(1, np.round(2.0 / spacing_zyx)).astype(int)
    box = tuple(slice(axis.start, axis.stop, n)
                for axis, n in zip(ndimage.find_objects(lung.astype(np.uint8))[0], step))
    offset = np.asarray([axis.start for axis in box])
    coarse = spacing_zyx * step
    depth = ndimage.distance_transform_edt(np.pad(lung[box], 1), sampling=coarse)[1:-1, 1:-1, 1:-1]
    grid = np.ogrid[tuple(slice(0, n) for n in depth.shape)]
    for centre, radius in placed:
        distance2 = sum(((axis * n + o - c) * s) ** 2
                        for axis, n, o, c, s in zip(grid, step, offset, centre, spacing_zyx))
        depth[distance2 <= (radius + radius_mm + 5.0) ** 2] = 0
    centre = offset + step * np.asarray(np.unravel_index(int(np.argmax(depth)), depth.shape))
    assert depth.max() > radius_mm + coarse.max(), "the lung is too thin for the synthetic lesion"
    placed.append((centre, radius_mm))
    half = np.ceil(radius_mm / spacing_zyx).astype(int) + 1
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, lung.shape)
    local = np.ogrid[tuple(slice(a, b) for a, b in zip(low, high))]
    ball = np.zeros(lung.shape, dtype=bool)
    ball[tuple(slice(a, b) for a, b in zip(low, high))] = \
        sum(((axis - c) * s) ** 2 for axis, c, s in zip(local, centre, spacing_zyx)) <= radius_mm ** 2
    return ball


def _centroid(mask: np.ndarray, image: sitk.Image) -> Centroid:
    z, y, x = np.argwhere(mask).mean(axis=0)
    return Centroid.from_lps(image.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))), image)


def _nodule(index: int, mask: np.ndarray, image: sitk.Image, location: str, kind: str = "nodule") -> Nodule:
    spacing = image.GetSpacing()
    rows = np.argwhere(mask.any(axis=0))  # (y, x) of the axial footprint
    long_axis = float(max(np.ptp(rows[:, 0]) + 1, 0) * spacing[1])
    return Nodule(id=index, centroid=_centroid(mask, image), long_axis_mm=long_axis, short_axis_mm=0.8 * long_axis,
                  volume_mm3=float(mask.sum() * np.prod(spacing)), mean_hu=float(LESION_HU), type="solid",
                  detection_score=None if kind == "mass" else 0.9 - 0.1 * index, location=location,
                  kind=kind, detected_by="mass" if kind == "mass" else "blob",
                  operating_point=None if kind == "mass" else "balanced",
                  malignancy=Malignancy(probability=0.3 * index, models=["measured_nodule"]),
                  characteristics=Characteristics(texture="solid", texture_probability=0.8,
                                                  calcification_probability=0.1, spiculation_probability=0.6,
                                                  lobulation_probability=0.3, ill_defined_margin_probability=0.2,
                                                  present=["spiculation"]),
                  lung_rads=LungRads(category="4A" if long_axis >= 8 else "3"))


def _findings(ct: CTVolume, lungs, nodules: list[Nodule]) -> Findings:
    measured = measure_densitometry(ct.image, lungs.labels).to_dict()
    densitometry = {region: Densitometry(laa_950_percent=values["laa_950_percent"],
                                         laa_910_percent=values["laa_910_percent"],
                                         laa_856_percent=values["laa_856_percent"], perc15_hu=values["perc15_hu"])
                    for region, values in measured.items() if values is not None}
    volumes = {"right": lungs.right_volume_ml, "left": lungs.left_volume_ml, "total": lungs.total_volume_ml}
    run = RunInfo(lungai_version=__version__, tasks=["lungs", "nodules", "emphysema"], device="cpu",
                  started_utc="2026-01-01T00:00:00Z", finished_utc="2026-01-01T00:00:10Z")
    return Findings(input=InputInfo.from_volume(ct), lungs={r: LungVolume(volume_ml=volumes[r]) for r in REGIONS},
                    emphysema=Emphysema(densitometry=densitometry), nodules=nodules,
                    warnings=list(lungs.warnings), run=run)
