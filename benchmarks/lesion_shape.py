"""Shape of true nodules and of false positives: the numbers behind the plausibility checks.

:func:`lungai.preprocessing.lesion_region.lesion_plausibility` drops lesions of 10 mm or more that
are thinner than ``MIN_THICKNESS_RATIO`` of their long axis or fill less than ``MIN_SOLIDITY`` of
their convex hull. This prints, for validation data only:

1. the solidity and thickness ratio of the 121 validation-split reader-consensus masks of
   ``lidc_vois`` (the lowest values and the 1st percentile);
2. with ``--inserted N``: ``lungai run`` at ``high`` (the checks' solidity limit switched off) on N
   validation inserted-nodule scans (seed 3), and every reported lesion of 10 mm or more with its
   solidity, thickness ratio and whether it is an inserted nodule (its centroid within the
   nodule's radius, at least 5 mm) or not. The backgrounds' own lesions (A0001's cancer) count as
   "not inserted"; read the rows.

Usage::

    python benchmarks/lesion_shape.py [--data ../shared/data] [--inserted 6]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.data.lidc_vois import list_vois
from lungai.data.splits import cases_for_split, load_split
from lungai.labels import NODULE_BASE_VALUE
from lungai.preprocessing import lesion_region
from lungai.preprocessing.lesion_region import SHAPE_CHECK_FROM_MM, inscribed_diameter_mm, solidity
from lungai.preprocessing.measurements import axial_diameters

logger = logging.getLogger("lesion_shape")

REPO = Path(__file__).resolve().parents[1]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


def reader_masks(data: Path) -> list[str]:
    """Solidity and thickness ratio over the validation-split reader-consensus masks."""
    rows = []
    for case in cases_for_split(list_vois(data / "lidc_vois").cases, load_split(), "val"):
        sample = case.load()
        mask = _largest_component(sample.mask.astype(bool))
        long_axis = axial_diameters(mask, sample.spacing_zyx).long_axis_mm
        rows.append((solidity(mask, sample.spacing_zyx), inscribed_diameter_mm(mask, sample.spacing_zyx) / long_axis))
    solid, thick = np.array(rows).T
    return [f"validation reader masks: {len(rows)}",
            f"  solidity: lowest {np.sort(solid)[:3].round(3).tolist()}, 1st percentile {np.percentile(solid, 1):.3f}",
            f"  thickness ratio: lowest {np.sort(thick)[:3].round(3).tolist()}, "
            f"1st percentile {np.percentile(thick, 1):.3f}"]


def _lesion_rows(run: Path, scan_id: str, nodules: list) -> list[str]:
    labels = sitk.ReadImage(str(next(run.glob("*_labels.nii.gz"))))
    array = sitk.GetArrayViewFromImage(labels)
    spacing = tuple(float(s) for s in reversed(labels.GetSpacing()))
    rows = []
    for lesion in json.loads((run / "findings.json").read_text())["nodules"]:
        mask = array == NODULE_BASE_VALUE + lesion["id"]
        if lesion["long_axis_mm"] < SHAPE_CHECK_FROM_MM or not mask.any():
            continue
        mask = mask[ndimage.find_objects(mask.astype(np.uint8))[0]]
        centre = np.asarray(lesion["centroid"]["lps_mm"])
        inserted = any(np.linalg.norm(centre - np.asarray(n.center_mm)) <= max(n.diameter_mm / 2, 5.0) for n in nodules)
        rows.append(f"| {scan_id} | {lesion['id']} | {lesion['detected_by']} | {lesion['long_axis_mm']:.1f} "
                    f"| {'yes' if inserted else 'no'} | {solidity(mask, spacing):.2f} "
                    f"| {inscribed_diameter_mm(mask, spacing) / lesion['long_axis_mm']:.2f} |")
    return rows


def inserted_runs(data: Path, scans: int) -> list[str]:
    """Every reported lesion of 10 mm or more on validation inserted scans, checks' solidity limit off."""
    from lungai.evaluation.detection_eval import inserted_cases
    from lungai.pipeline.config import RunConfig
    from lungai.pipeline.runner import run_pipeline

    lesion_region.MIN_SOLIDITY = 0.0
    rows = ["| scan | lesion | found by | long axis (mm) | inserted nodule | solidity | thickness ratio |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for case in inserted_cases(data, "val", scans, 6, seed=3):
            scan = Path(tmp) / f"{case.scan_id}.nrrd"
            sitk.WriteImage(case.image, str(scan), True)
            run_pipeline(RunConfig(input=scan, output=Path(tmp) / case.scan_id, tasks=("lungs", "nodules"),
                                   operating_point="high", device="cpu"))
            rows += _lesion_rows(Path(tmp) / case.scan_id, case.scan_id, case.nodules)
            logger.info("%s done", case.scan_id)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--inserted", type=int, default=0, help="validation inserted scans to run (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = reader_masks(args.data)
    if args.inserted:
        lines += [""] + inserted_runs(args.data, args.inserted)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
