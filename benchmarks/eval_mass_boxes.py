"""Per-slice overlap of the masses ``lungai run`` reports with Lung-PET-CT-Dx tumour boxes.

The Lung-PET-CT-Dx scans come with per-slice tumour bounding boxes (``boxes/<SOPInstanceUID>.xml``,
Pascal VOC pixel coordinates of that DICOM image). This runs the real pipeline (lungs and
nodules, at ``--sensitivity``) on the scan's ``dicom.zip``, reads every lesion of kind ``mass`` back
from the written label map and reports, over the slices that have a box:

- ``box_slices``: slices with a box;
- ``slices_hit``: the fraction of box slices where a mass overlaps the box;
- ``slices_iou_0_5``: the fraction of box slices where the IoU of the box and the mass's bounding
  box on that slice is at least 0.5;
- ``mean_box_iou``: the mean of those IoUs (0 where no mass is on the slice);
- ``inside_fraction``: the fraction of mass voxels (on all slices) inside a box;
- ``false_slices``: slices with mass voxels and no box;
- ``masses``, ``other_lesions``: how many masses and nodules the run reported.

Usage::

    python benchmarks/eval_mass_boxes.py ../shared/data/lung_pet_ct_dx/A0001 [--sensitivity balanced] [--reach R] \\
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.evaluation.tumour_boxes import BoxOverlap, box_overlap, read_boxes
from lungai.io.reader import read_scan, scan_stem
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline
from lungai.preprocessing import lesion_region

logger = logging.getLogger("eval_mass_boxes")


def evaluate(folder: Path, sensitivity: str = "balanced", device: str = "cpu") -> BoxOverlap:
    """Run lungs and nodules on ``folder/dicom.zip`` and compare its masses with ``folder/boxes``."""
    scan = folder / "dicom.zip"
    image = read_scan(scan).image
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        result = run_pipeline(RunConfig(input=scan, output=out, tasks=("lungs", "nodules"), device=device,
                                        operating_point=sensitivity))
        written = sitk.DICOMOrient(sitk.ReadImage(str(out / f"{scan_stem(scan)}_labels.nii.gz")), "LPS")
    array = sitk.GetArrayFromImage(written)
    masses = [n for n in result.findings.nodules if n.kind == "mass"]
    mask = np.isin(array, [labels.nodule(n.id).value for n in masses])
    overlap = box_overlap(mask, read_boxes(folder, image), float(np.prod(image.GetSpacing())) / 1000.0)
    return replace(overlap, masses=len(masses), other_lesions=len(result.findings.nodules) - len(masses))


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a Lung-PET-CT-Dx case folder (dicom.zip, boxes/)")
    parser.add_argument("--sensitivity", default="balanced", choices=("high", "balanced", "specific"))
    parser.add_argument("--reach", type=float, default=None,
                        help="how far a mass reaches from its core, in core radii (default: the shipped MASS_REACH)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.reach is not None:
        lesion_region.MASS_REACH = args.reach
    result = evaluate(args.folder, args.sensitivity, args.device)
    text = json.dumps(asdict(result), indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
