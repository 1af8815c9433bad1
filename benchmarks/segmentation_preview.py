"""What the segmentation preview saves, and whether it changes any finding.

``lungai run`` (lungs and nodules) on each scan twice in one process, with the preview of
:func:`lungai.pipeline.nodules.segment_detection` and without it (as before it existed): the
model inputs ``resunet3d`` receives in each run and whether the two runs' lesions are identical.
Scans: given paths, and/or ``--val N`` validation inserted-nodule scans (validation-split VOIs
pasted into the training backgrounds, as ``lungai evaluate detection`` makes them).

Usage::

    python benchmarks/segmentation_preview.py ../shared/data/lidc_scans/LIDC-IDRI-0001/dicom.zip \\
        ../shared/data/lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd ../shared/data/lung_pet_ct_dx/A0001/dicom.zip
    python benchmarks/segmentation_preview.py --val 6 --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import SimpleITK as sitk
import torch

import lungai
from lungai.inference import voi_segmentation
from lungai.pipeline import nodules

logger = logging.getLogger("segmentation_preview")


class _Counter:
    """Counts the model inputs of ``voi_segmentation._run_model`` (patched for the benchmark's process)."""

    def __init__(self) -> None:
        self.inputs = 0
        self._original = voi_segmentation._run_model
        voi_segmentation._run_model = self._run  # type: ignore[assignment]  # benchmark-only instrumentation

    def _run(self, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        self.inputs += batch.shape[0]
        return self._original(model, batch)


def _lesions(result: Any) -> list[tuple[str, list[float], float]]:
    return [(n.kind, [round(v, 1) for v in n.centroid.lps_mm], n.volume_mm3) for n in result.findings.nodules]


def compare(scan: Path, out: Path, store: Any, counter: _Counter) -> dict[str, Any]:
    """Both runs of one scan: model inputs and lesions of each, and whether the lesions agree."""
    preview = nodules._preview
    row: dict[str, Any] = {"scan": str(scan)}
    try:
        for name, function in (("with", preview), ("without", lambda *args, **kwargs: None)):
            nodules._preview = function  # type: ignore[assignment]  # benchmark-only switch
            counter.inputs = 0
            result = lungai.run(scan, out / name, tasks="lungs,nodules", models=store, overwrite=True)
            row[f"inputs_{name}"] = counter.inputs
            row[f"lesions_{name}"] = _lesions(result)
    finally:
        nodules._preview = preview  # type: ignore[assignment]  # restore
    row["identical"] = row["lesions_with"] == row["lesions_without"]
    return row


def _scans(args: argparse.Namespace, folder: Path) -> list[Path]:
    scans = list(args.scans)
    if args.val:
        from lungai.evaluation.detection_eval import inserted_cases

        for case in inserted_cases(args.data, "val", args.val, seed=args.seed):
            path = folder / f"{case.scan_id}.nrrd"
            sitk.WriteImage(case.image, str(path), True)
            scans.append(path)
    return scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scans", nargs="*", type=Path)
    parser.add_argument("--val", type=int, default=0, help="validation inserted-nodule scans to add")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=None, help="JSON of every row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counter = _Counter()
    store = lungai.load_models(device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scan in _scans(args, Path(tmp)):
            row = compare(scan, Path(tmp) / "runs" / scan.stem, store, counter)
            rows.append(row)
            print(f"{scan.name}: model inputs {row['inputs_with']} with the preview, {row['inputs_without']} "
                  f"without; lesions identical: {row['identical']}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
