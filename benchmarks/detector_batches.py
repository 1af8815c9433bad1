"""Seconds the detector's classifier takes over a scan's candidate ROIs, by ROIs per call.

``lungai run`` scores a scan's (at most 300) blob candidates with ``convlstm_nodule``
(:func:`lungai.pipeline.detection.roi_scores`, ``lungai.pipeline.detection.BATCH_SIZE`` ROIs per
call). This cuts the ROIs of one scan's candidates once, then times the scoring at each batch size,
the sizes interleaved within each repeat (the machine's drift hits them alike), and prints the
median and range per size and the largest score difference from the first size.

Usage::

    python benchmarks/detector_batches.py [--scan ../shared/data/lidc_scans/LIDC-IDRI-0001/dicom.zip] \\
        [--sizes 8,16,32] [--repeats 6]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np

import lungai
from lungai.io.reader import read_scan
from lungai.pipeline.detection import roi_scores
from lungai.preprocessing.candidates import find_candidates
from lungai.preprocessing.detection_rois import extract_rois
from lungai.preprocessing.lung_mask import segment_lungs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=Path, default=Path("../shared/data/lidc_scans/LIDC-IDRI-0001/dicom.zip"))
    parser.add_argument("--sizes", default="8,16,32", help="comma-separated ROIs per call")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(v) for v in args.sizes.split(",")]
    image = read_scan(args.scan).image
    candidates = find_candidates(image, segment_lungs(image).labels)
    rois = extract_rois(image, [c.centre_lps_mm for c in candidates])
    classifier = lungai.load_models(device="cpu").get("convlstm_nodule")
    reference = roi_scores(classifier, rois, "cpu", sizes[0])
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    largest = dict.fromkeys(sizes, 0.0)
    for _ in range(args.repeats):
        for size in sizes:
            start = time.perf_counter()
            scores = roi_scores(classifier, rois, "cpu", size)
            seconds[size].append(time.perf_counter() - start)
            largest[size] = max(largest[size], float(np.abs(scores - reference).max()))
    print(f"{args.scan.name}: {len(rois)} ROIs, {args.repeats} repeats")
    for size in sizes:
        times = seconds[size]
        print(f"  {size} per call: median {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}), "
              f"largest score difference from {sizes[0]} per call {largest[size]:.1e}")


if __name__ == "__main__":
    main()
