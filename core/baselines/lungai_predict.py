"""Write a LungAI nodule model's masks for a split as NIfTI files, the way nnU-Net writes its predictions.

Run as a child process by :mod:`lungai.baselines.compare` (``python -m lungai.baselines.lungai_predict``)
so that its wall time and peak memory are measured like ``nnUNetv2_predict``'s: start-up, model
loading and every case included. The masks are exactly what ``lungai evaluate`` scores: the VOI
segmented as ``lungai run`` segments a nodule (:mod:`lungai.inference.voi_segmentation`: mirrored,
tiled when the ROI cuts the nodule) on each VOI's own grid, thresholded at the checkpoint's validation-chosen
threshold (:func:`lungai.evaluation.segmentation_eval.checkpoint_inference`, with its scales) and reduced to its
largest connected component. Files are ``<case_id>.nii.gz`` on the VOI's grid (spacing, origin, direction).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.evaluation.cases import evaluation_cases
from lungai.evaluation.predictions import load_nodule_model
from lungai.evaluation.segmentation_eval import checkpoint_inference
from lungai.inference.voi_segmentation import predict_voi_probability, with_overrides
from lungai.preprocessing.measurements import largest_component
from lungai.preprocessing.roi import roi_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LungAIPredictConfig:
    """One prediction run.

    Attributes:
        weights: the checkpoint folder.
        data: folder laid out like ``lidc_vois/``.
        split: ``test``, ``val`` or ``all``.
        output: folder for ``<case_id>.nii.gz``.
        threshold: probability threshold of the mask; None: the checkpoint's own (``config.json``).
        device: where the model runs.
    """

    weights: Path
    data: Path
    split: str
    output: Path
    threshold: float | None = None
    device: str = "cpu"


def _write_mask(mask: np.ndarray, like: Path, path: Path) -> None:
    reference = sitk.ReadImage(str(like))
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)


def predict_split(config: LungAIPredictConfig) -> str:
    """Predict every case of the split and write the masks.

    Returns:
        The model's registry name.
    """
    cases = evaluation_cases(config.data, config.split)
    name, model = load_nodule_model(config.weights, config.device)
    spec = roi_spec(name)
    inference = with_overrides(checkpoint_inference(config.weights), threshold=config.threshold)
    threshold = inference.threshold
    config.output.mkdir(parents=True, exist_ok=True)
    for case in cases:
        sample = case.load()
        native = predict_voi_probability(model, sample.image, sample.spacing_zyx, spec, inference)
        _write_mask(largest_component(native >= threshold), case.image_path,
                    config.output / f"{case.case_id}.nii.gz")
    logger.info("%s: wrote %d masks to %s (threshold %.2f)", name, len(cases), config.output, threshold)
    return name


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the child process: ``--weights --data --split --output [--device]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    predict_split(LungAIPredictConfig(args.weights, args.data, args.split, args.output, args.threshold, args.device))


if __name__ == "__main__":
    main()
