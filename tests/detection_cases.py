"""Real small cases for the detection tests: the cip_small thorax with a real LIDC VOI pasted in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from shared_data import require

from lungai.data.lesion_insertion import Background, InsertedScan, place_nodules
from lungai.data.lidc_vois import VOISample, list_vois
from lungai.io.reader import read_scan
from lungai.preprocessing.lung_mask import segment_lungs


def small_background(data_root: Path) -> Background:
    """``cip_small/ct-64.nrrd`` (a real thorax at about 4 mm) with its lung mask and nothing excluded."""
    image = read_scan(require(data_root / "cip_small" / "ct-64.nrrd")).image
    lungs = segment_lungs(image).labels
    return Background("cip_small", image, lungs, np.zeros(tuple(reversed(image.GetSize())), bool))


def large_voi(data_root: Path, min_diameter_mm: float = 15.0) -> VOISample:
    """The first VOI of ``lidc_vois`` with at least ``min_diameter_mm`` (a clearly visible nodule)."""
    cases = list_vois(require(data_root / "lidc_vois")).cases
    return next(c for c in cases if c.diameter_mm >= min_diameter_mm).load()


def inserted_small_scan(data_root: Path, seed: int = 0) -> tuple[Background, InsertedScan]:
    """The small background with one large real nodule pasted at a random lung site."""
    background = small_background(data_root)
    scan = place_nodules(background, [large_voi(data_root)], np.random.default_rng(seed))
    assert len(scan.nodules) == 1, "the nodule found no site in the small background"
    return background, scan
