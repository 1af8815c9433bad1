"""Lesion-free training ROIs cut from a real whole scan (the tumour model's negatives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_data import require

from lungai import labels as structures
from lungai.data.negative_rois import (
    SOFT_TISSUE_HU,
    NegativeScan,
    _allowed_centres,
    _cut_shape,
    _work_grid,
    negative_volumes,
)
from lungai.data.roi_dataset import NoduleROIDataset
from lungai.preprocessing.roi import normalize_hu, roi_spec

SPEC = roi_spec("r3d_denseunet")


@pytest.fixture(scope="module")
def thorax(data_root: Path) -> Path:
    return require(data_root / "cip_small" / "ct-64.nrrd")


def test_scan_text_names_the_kept_side() -> None:
    assert NegativeScan.parse("a/chest.nrrd:left") == NegativeScan(Path("a/chest.nrrd"), "left")
    assert NegativeScan.parse("a/chest.nrrd") == NegativeScan(Path("a/chest.nrrd"), "both")
    assert str(NegativeScan.parse("c:/scans/chest.nrrd:right")) == "c:/scans/chest.nrrd:right"
    with pytest.raises(ValueError, match="unknown side"):
        NegativeScan(Path("a.nrrd"), "middle")


def test_negatives_are_seeded_roi_sized_soft_tissue(thorax: Path) -> None:
    scan = NegativeScan(thorax)
    first, again = negative_volumes(scan, SPEC, 6, seed=0), negative_volumes(scan, SPEC, 6, seed=0)
    assert len(first) == 6 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], negative_volumes(scan, SPEC, 6, seed=1)[0])
    assert all(v.shape == (24, 96, 96) and v.dtype == np.float32 and 0.0 <= v.min() <= v.max() <= 1.0 for v in first)
    centre = [v[12, 48, 48] for v in first]
    assert min(centre) >= normalize_hu(np.array(SOFT_TISSUE_HU))  # centred on soft tissue, never on air


def test_a_side_keeps_its_roi_off_the_other_half(thorax: Path) -> None:
    hu, labels = _work_grid(NegativeScan(thorax), SPEC)
    columns = np.nonzero((labels > 0).any(axis=(0, 1)))[0]
    midline = (columns.min() + columns.max()) / 2
    for side, sign, lung in (("left", 1, structures.LUNG_LEFT), ("right", -1, structures.LUNG_RIGHT)):
        inside, outside = _allowed_centres(hu, labels, SPEC, side)
        x = np.concatenate([inside, outside])[:, 2]
        assert len(inside) and len(outside)
        assert np.all(labels[tuple(inside.T)] == lung.value)  # the kept half's lung, by the lung mask's own labels
        assert np.all(sign * (x - midline) >= _cut_shape(SPEC)[2] / 2)  # no cut volume reaches the other half
    both = sum(len(c) for c in _allowed_centres(hu, labels, SPEC, "both"))
    assert both > sum(len(c) for c in _allowed_centres(hu, labels, SPEC, "left"))


def test_negatives_join_the_dataset_with_an_empty_mask(thorax: Path) -> None:
    negatives = negative_volumes(NegativeScan(thorax), SPEC, 3, seed=0)
    dataset = NoduleROIDataset([], SPEC, "nodule-seg", negatives=negatives)
    assert len(dataset) == dataset.n_negatives == 3
    image, target = dataset[0]
    assert tuple(image.shape) == (1, *SPEC.shape) and tuple(target.shape) == (2, *SPEC.shape)
    assert target[0].sum() == 0 and target[1].min() == 1.0
    with pytest.raises(ValueError, match="nodule-seg"):
        NoduleROIDataset([], roi_spec("resnet50_3d"), "malignancy", negatives=negatives)
