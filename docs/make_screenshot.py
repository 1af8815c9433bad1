"""Make the README's Slicer screenshot from a real LungAI run on LIDC-IDRI-0001.

Runs ``lungai run`` on the scan, reads the ``.seg.nrrd`` it wrote (segment names, colours
and label values from the file, as 3D Slicer shows them) and renders the axial slice with
the most nodule (or, without nodules, the most lung) the way Slicer's red slice view shows it:
patient's right on the left, anterior up, lung window (W 1500, L -600), segments filled at 35 %
with solid outlines.

Usage::

    .venv/bin/python docs/make_screenshot.py [--scan PATH] [--out docs/images/slicer_overlay.png]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from lungai.io.reader import read_scan
from lungai.labels import NODULE_BASE_VALUE
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline

logger = logging.getLogger("make_screenshot")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LUNGAI_TEST_DATA", REPO.parent / "shared" / "data"))
DEFAULT_SCAN = DATA / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip"
DEFAULT_OUT = REPO / "docs" / "images" / "slicer_overlay.png"

WINDOW_HU = (-1350.0, 150.0)
FILL_OPACITY = 0.35


def segmentation_image(path: Path) -> tuple[sitk.Image, list[dict]]:
    """The ``.seg.nrrd`` as a SimpleITK label image (LPS geometry) and its segment list."""
    segmentation = slicerio.read_segmentation(str(path))
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.asarray(segmentation["voxels"]).transpose(2, 1, 0))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    return image, segmentation["segments"]


def render(ct: sitk.Image, labels: sitk.Image, segments: list[dict], caption: str) -> Image.Image:
    """The axial slice with the most nodule voxels (most labelled voxels without nodules), segments drawn over it."""
    ct = sitk.DICOMOrient(ct, "LPS")  # rows run anterior -> posterior, columns right -> left
    labels = sitk.Resample(labels, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    label_voxels = sitk.GetArrayViewFromImage(labels)
    nodule_voxels = (label_voxels > NODULE_BASE_VALUE).sum(axis=(1, 2))
    k = int(np.argmax(nodule_voxels if nodule_voxels.any() else (label_voxels > 0).sum(axis=(1, 2))))
    hu = sitk.GetArrayViewFromImage(ct)[k].astype(float)
    gray = np.clip((hu - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]), 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    for segment in segments:
        mask = label_voxels[k] == segment["labelValue"]
        colour = np.asarray(segment["color"], dtype=float)
        rgb[mask] = (1 - FILL_OPACITY) * rgb[mask] + FILL_OPACITY * colour
        rgb[mask & ~ndimage.binary_erosion(mask, iterations=2)] = colour
    picture = Image.fromarray(np.round(255 * rgb).astype(np.uint8))
    _legend(picture, segments, f"{caption}, axial slice {k + 1} of {ct.GetSize()[2]}")
    return picture


def _legend(picture: Image.Image, segments: list[dict], caption: str) -> None:
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=15)
    draw.text((10, 8), caption, fill=(255, 255, 255), font=font)
    draw.text((picture.width - 28, picture.height // 2 - 8), "L", fill=(255, 220, 0), font=font)
    draw.text((14, picture.height // 2 - 8), "R", fill=(255, 220, 0), font=font)
    y = picture.height - 12 - 22 * len(segments)
    for segment in segments:
        colour = tuple(int(round(255 * value)) for value in segment["color"])
        draw.rectangle((10, y + 2, 24, y + 16), fill=colour, outline=(255, 255, 255))
        draw.text((32, y), segment["name"], fill=(255, 255, 255), font=font)
        y += 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scan", type=Path, default=DEFAULT_SCAN, help="scan to run LungAI on")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--caption", default="LIDC-IDRI-0001, LungAI lungs and nodules",
                        help="text in the top-left corner")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "results"
        run_pipeline(RunConfig(input=args.scan, output=output, device="cpu"))
        labels, segments = segmentation_image(next(output.glob("*.seg.nrrd")))
        picture = render(read_scan(args.scan).image, labels, segments, args.caption)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    logger.info("wrote %s (%d KB)", args.out, args.out.stat().st_size // 1024)


if __name__ == "__main__":
    main()
