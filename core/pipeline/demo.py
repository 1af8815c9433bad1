"""``lungai demo``: run the whole pipeline on the synthetic phantom and compare with its truth.

The phantom's nodules are known exactly (:mod:`lungai.data.phantom`); :func:`run_demo` pairs
them with the run's findings by :func:`lungai.pipeline.demo_truth.match_nodules` and returns the
table that says which were found, how their long axis and volume compare with the truth (both
measured on the phantom's nodule labels the way the pipeline measures a segmentation), and
which findings are false positives. ``lungai demo --real`` does the same on a real scan
(:mod:`lungai.pipeline.real_demo`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.data.phantom import Phantom, make_phantom
from lungai.io.output import check_output_target
from lungai.pipeline.config import RunConfig
from lungai.pipeline.demo_truth import Comparison, KnownNodule, format_comparison, found_nodules, match_nodules
from lungai.pipeline.progress import ProgressCallback, ignore_progress
from lungai.pipeline.runner import RunResult, run_pipeline
from lungai.preprocessing.measurements import axial_diameters

logger = logging.getLogger(__name__)

PHANTOM_FILE = "phantom_ct.nrrd"
RESULTS_FOLDER = "phantom_ct_lungai"


@dataclass(frozen=True)
class DemoOutcome:
    """A finished demo run.

    Attributes:
        result: the run's findings and output folder.
        comparison: the known nodules against the findings.
        report: what to print after the findings' summary: the truth and the comparison table.
    """

    result: RunResult
    comparison: Comparison
    report: str


def phantom_truth(phantom: Phantom) -> list[KnownNodule]:
    """The phantom's nodules with their true long axis and volume, from the nodule labels.

    Both are measured on the label voxels (inside the lungs) as the pipeline measures a
    segmentation: the long axis by :func:`lungai.preprocessing.measurements.axial_diameters`.
    """
    nodule_labels = sitk.GetArrayViewFromImage(phantom.nodule_labels)
    spacing_zyx = tuple(reversed(phantom.image.GetSpacing()))
    voxel_mm3 = float(np.prod(phantom.image.GetSpacing()))
    known = []
    for nodule in phantom.nodules:
        mask = nodule_labels == nodule.label
        known.append(KnownNodule(name=nodule.type, centre_lps_mm=nodule.centre_lps_mm,
                                 diameter_mm=nodule.diameter_mm, type=nodule.type,
                                 long_axis_mm=axial_diameters(mask, spacing_zyx).long_axis_mm,
                                 volume_mm3=float(np.count_nonzero(mask)) * voxel_mm3))
    return known


def truth_summary(phantom: Phantom) -> str:
    """The phantom's true lung volumes, to print beside the findings."""
    lungs = sitk.GetArrayViewFromImage(phantom.lung_labels)
    voxel_ml = float(np.prod(phantom.image.GetSpacing())) / 1000.0
    right = (lungs == labels.LUNG_RIGHT.value).sum() * voxel_ml / 1000.0
    left = (lungs == labels.LUNG_LEFT.value).sum() * voxel_ml / 1000.0
    return (f"Phantom truth: right lung {right:.2f} L, left lung {left:.2f} L, "
            f"{len(phantom.nodules)} nodules ({', '.join(n.type for n in phantom.nodules)}).")


def run_demo(output: Path, overwrite: bool = False,
             on_event: ProgressCallback = ignore_progress) -> DemoOutcome:
    """Write the phantom to ``output/phantom_ct.nrrd`` and run LungAI on it.

    Args:
        output: demo folder; results go to ``output/phantom_ct_lungai``.
        overwrite: replace an existing demo folder's contents.
        on_event: progress callback for the run.

    Returns:
        The run's result, the phantom's nodules against the findings, and the text to print.
    """
    output = Path(output)
    check_output_target(output, overwrite)
    phantom = make_phantom()
    output.mkdir(parents=True, exist_ok=True)
    scan = output / PHANTOM_FILE
    sitk.WriteImage(phantom.image, str(scan), True)
    logger.info("phantom written to %s", scan)
    result = run_pipeline(RunConfig(input=scan, output=output / RESULTS_FOLDER, overwrite=True,
                                     device="cpu"), on_event=on_event)
    comparison = match_nodules(phantom_truth(phantom), found_nodules(result.findings))
    notes = [truth_summary(phantom)]
    if "nodules" not in result.findings.run.tasks:
        notes.append("Nodule detection did not run (no nodule weights installed; `lungai info`).")
    report = "\n".join([*notes, format_comparison(comparison, "Phantom truth vs LungAI")])
    logger.info("demo: found %d of %d phantom nodules, %d false positive(s)", comparison.num_found,
                len(comparison.matches), len(comparison.false_positives))
    return DemoOutcome(result=result, comparison=comparison, report=report)
