"""Per-slice tumour boxes (Lung-PET-CT-Dx) and how a predicted lesion mask overlaps them.

The Lung-PET-CT-Dx scans come with per-slice tumour bounding boxes (``boxes/<SOPInstanceUID>.xml``,
Pascal VOC pixel coordinates of that DICOM image). :func:`read_boxes` places them on the LPS grid
of the scan as LungAI reads it; :func:`box_overlap` compares a mask with them slice by slice.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk


@dataclass(frozen=True)
class SliceBox:
    """A tumour box on one slice of the LPS grid: ``k`` and inclusive ``(y0, x0, y1, x1)`` voxels."""

    k: int
    y0: int
    x0: int
    y1: int
    x1: int


@dataclass(frozen=True)
class BoxOverlap:
    """The numbers the script reports (see the module docstring)."""

    box_slices: int
    slices_hit: float
    slices_iou_0_5: float
    mean_box_iou: float
    inside_fraction: float
    false_slices: int
    predicted_ml: float
    masses: int = 0
    other_lesions: int = 0


def _dicom_geometry(zip_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """SOPInstanceUID -> (position, row direction * column spacing, column direction * row spacing)."""
    geometry = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            if name.endswith("/"):
                continue
            ds = pydicom.dcmread(io.BytesIO(archive.read(name)), stop_before_pixels=True, force=True)
            if "ImagePositionPatient" not in ds:
                continue
            orientation = np.asarray(ds.ImageOrientationPatient, float)
            row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
            geometry[str(ds.SOPInstanceUID)] = (np.asarray(ds.ImagePositionPatient, float),
                                                orientation[:3] * column_spacing, orientation[3:] * row_spacing)
    return geometry


def read_boxes(folder: Path, image: sitk.Image) -> list[SliceBox]:
    """The boxes of ``folder/boxes`` placed on the LPS grid of ``image`` (read from ``folder/dicom.zip``)."""
    geometry = _dicom_geometry(folder / "dicom.zip")
    boxes = []
    for path in sorted((folder / "boxes").glob("*.xml")):
        position, along_columns, along_rows = geometry[path.stem]
        for box in ET.parse(path).getroot().iter("bndbox"):
            xmin, ymin, xmax, ymax = (float(box.findtext(tag) or "nan") for tag in ("xmin", "ymin", "xmax", "ymax"))
            corners = [image.TransformPhysicalPointToIndex(tuple(position + c * along_columns + r * along_rows))
                       for c, r in ((xmin, ymin), (xmax, ymax))]
            (i0, j0, k), (i1, j1, _) = corners
            boxes.append(SliceBox(int(k), min(j0, j1), min(i0, i1), max(j0, j1), max(i0, i1)))
    return boxes


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def box_overlap(tumour: np.ndarray, boxes: list[SliceBox], voxel_ml: float) -> BoxOverlap:
    """Compare a predicted mass mask ``(z, y, x)`` with the boxes."""
    hits, ious = [], []
    inside = np.zeros(tumour.shape, bool)
    for box in boxes:
        window = (box.k, slice(box.y0, box.y1 + 1), slice(box.x0, box.x1 + 1))
        inside[window] = True
        hits.append(bool(tumour[window].any()))
        rows, cols = np.nonzero(tumour[box.k])
        ious.append(0.0 if rows.size == 0 else
                    _iou((rows.min(), cols.min(), rows.max(), cols.max()), (box.y0, box.x0, box.y1, box.x1)))
    box_slices = {box.k for box in boxes}
    predicted_slices = set(np.nonzero(tumour.any(axis=(1, 2)))[0].tolist())
    total = int(np.count_nonzero(tumour))
    return BoxOverlap(box_slices=len(box_slices), slices_hit=round(float(np.mean(hits)), 3),
                      slices_iou_0_5=round(float(np.mean(np.asarray(ious) >= 0.5)), 3),
                      mean_box_iou=round(float(np.mean(ious)), 3),
                      inside_fraction=round(float(np.count_nonzero(tumour & inside)) / total, 3) if total else 0.0,
                      false_slices=len(predicted_slices - box_slices), predicted_ml=round(total * voxel_ml, 1))
