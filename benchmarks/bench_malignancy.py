"""CPU cost per nodule of the malignancy stage's measured scorer: features + the shipped regressions.

For each of ``--cases`` validation VOIs (never a test patient), the nodule mask is the threshold
baseline's (-400 HU, the component at the centre: pixels only, no model, so the timing does not
include segmentation, which the nodules stage already did) and the stage's work is timed:
:func:`lungai.preprocessing.nodule_features.nodule_features` on the HU crop and mask, then the
shipped ``measured_nodule`` regressions. Loading the weights is timed once, apart. One torch
thread. Prints the median and maximum seconds per nodule.

Usage::

    python benchmarks/bench_malignancy.py --data ../shared/data/lidc_vois [--cases 40]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import torch

from lungai.evaluation.baselines import threshold_segmentation
from lungai.evaluation.cases import reference_cases
from lungai.models.measured_nodule import MeasuredNodule
from lungai.preprocessing.nodule_features import feature_vector, nodule_features
from lungai.weights.resolver import load_model

logger = logging.getLogger("bench_malignancy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = load_model("measured_nodule")
    assert isinstance(model, MeasuredNodule)
    load_s = time.perf_counter() - started
    seconds = []
    for case in reference_cases(args.data, "val")[:args.cases]:
        sample = case.load()
        mask = threshold_segmentation(sample.image).astype(bool)
        if not mask.any():
            continue
        started = time.perf_counter()
        row = feature_vector(nodule_features(sample.image, mask, sample.spacing_zyx))
        with torch.no_grad():
            model.probabilities(torch.as_tensor(row[None], dtype=torch.float32))
        seconds.append(time.perf_counter() - started)
    logger.info("measured_nodule: weights loaded in %.3f s; per nodule (n=%d): median %.4f s, max %.4f s",
                load_s, len(seconds), statistics.median(seconds), max(seconds))


if __name__ == "__main__":
    main()
