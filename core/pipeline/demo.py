"""``lungai demo``: run the whole pipeline on the synthetic phantom and compare with its truth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.data.phantom import Phantom, make_phantom
from lungai.io.output import check_output_target
from lungai.pipeline.config import RunConfig
from lungai.pipeline.progress import ProgressCallback, ignore_progress
from lungai.pipeline.runner import RunResult, run_pipeline

logger = logging.getLogger(__name__)

PHANTOM_FILE = "phantom_ct.nrrd"
RESULTS_FOLDER = "phantom_ct_lungai"


def truth_summary(phantom: Phantom) -> str:
    """The phantom's true lung volumes and nodules, to print beside the findings."""
    lungs = sitk.GetArrayViewFromImage(phantom.lung_labels)
    voxel_ml = float(np.prod(phantom.image.GetSpacing())) / 1000.0
    right = (lungs == labels.LUNG_RIGHT.value).sum() * voxel_ml / 1000.0
    left = (lungs == labels.LUNG_LEFT.value).sum() * voxel_ml / 1000.0
    lines = [f"Phantom truth: right lung {right:.2f} L, left lung {left:.2f} L; nodules:"]
    for nodule in phantom.nodules:
        x, y, z = nodule.centre_lps_mm
        lines.append(f"  {nodule.type} {nodule.diameter_mm:g} mm at LPS ({x:.0f}, {y:.0f}, {z:.0f}) mm")
    return "\n".join(lines)


def run_demo(output: Path, overwrite: bool = False,
             on_event: ProgressCallback = ignore_progress) -> tuple[RunResult, str]:
    """Write the phantom to ``output/phantom_ct.nrrd`` and run LungAI on it.

    Args:
        output: demo folder; results go to ``output/phantom_ct_lungai``.
        overwrite: replace an existing demo folder's contents.
        on_event: progress callback for the run.

    Returns:
        The run's result and a text summary of the phantom's truth.
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
    return result, truth_summary(phantom)
