"""Per-slice overlap of ``lungai run --tasks tumour`` with Lung-PET-CT-Dx tumour boxes.

The Lung-PET-CT-Dx scans come with per-slice tumour bounding boxes (``boxes/<SOPInstanceUID>.xml``,
Pascal VOC pixel coordinates of that DICOM image). This runs the real pipeline (tumour task
only) on the scan's ``dicom.zip``, reads the tumour label (``labels.TUMOUR``) back from the
written label map and reports, over the slices that have a box:

- ``slices_hit``: the fraction of box slices where the predicted tumour overlaps the box;
- ``mean_box_iou``: the mean IoU between the box and the bounding box of the predicted tumour
  on that slice (0 where nothing is predicted);
- ``inside_fraction``: the fraction of predicted tumour voxels (on all slices) inside a box;
- ``false_slices``: slices with predicted tumour and no box.

Usage::

    python benchmarks/eval_tumour_boxes.py ../shared/data/lung_pet_ct_dx/A0001 [--weights-manifest M] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from lungai import labels
from lungai.io.reader import read_scan, scan_stem
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline

logger = logging.getLogger("eval_tumour_boxes")


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
    mean_box_iou: float
    inside_fraction: float
    false_slices: int
    predicted_ml: float


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
            xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
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
    """Compare a predicted tumour mask ``(z, y, x)`` with the boxes."""
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
                      mean_box_iou=round(float(np.mean(ious)), 3),
                      inside_fraction=round(float(np.count_nonzero(tumour & inside)) / total, 3) if total else 0.0,
                      false_slices=len(predicted_slices - box_slices), predicted_ml=round(total * voxel_ml, 1))


def evaluate(folder: Path, manifest: Path | None, device: str = "cpu") -> BoxOverlap:
    """Run the tumour task on ``folder/dicom.zip`` and compare it with ``folder/boxes``."""
    scan = folder / "dicom.zip"
    image = read_scan(scan).image
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        run_pipeline(RunConfig(input=scan, output=out, tasks=("tumour",), device=device, manifest=manifest))
        written = sitk.DICOMOrient(sitk.ReadImage(str(out / f"{scan_stem(scan)}_labels.nii.gz")), "LPS")
    tumour = sitk.GetArrayFromImage(written) == labels.TUMOUR.value
    return box_overlap(tumour, read_boxes(folder, image), float(np.prod(image.GetSpacing())) / 1000.0)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a Lung-PET-CT-Dx case folder (dicom.zip, boxes/)")
    parser.add_argument("--weights-manifest", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = evaluate(args.folder, args.weights_manifest, args.device)
    text = json.dumps(asdict(result), indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
