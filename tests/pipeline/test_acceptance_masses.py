"""Masses on a real scan: Lung-PET-CT-Dx A0001's left adenocarcinoma, against its per-slice boxes.

The mass lies largely outside the anatomical lung mask (it replaces lung tissue), so it is found
only through the lesion search region. At the default operating point it must be reported as a
mass whose per-slice bounding box overlaps the annotated box (IoU >= 0.5) on at least 80 % of the
annotated slices, and no lesion may reach beyond the lungs' neighbourhood.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from shared_data import require

from lungai import labels
from lungai.evaluation.tumour_boxes import box_overlap, read_boxes
from lungai.io.findings import load_findings
from lungai.io.reader import read_scan
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline
from lungai.preprocessing.lesion_region import near_lungs

pytestmark = pytest.mark.slow

CASE = Path("lung_pet_ct_dx/A0001")


@pytest.fixture(scope="module")
def a0001(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = require(data_root / CASE)
    scan = folder / "dicom.zip"
    out = tmp_path_factory.mktemp("a0001") / "out"
    run_pipeline(RunConfig(input=scan, output=out, tasks=("lungs", "nodules"), device="cpu"))
    labels_image = sitk.DICOMOrient(sitk.ReadImage(str(out / "Lung_Dx-A0001_20070404_2_labels.nii.gz")), "LPS")
    return folder, read_scan(scan).image, load_findings(out / "findings.json"), sitk.GetArrayFromImage(labels_image)


def test_the_adenocarcinoma_is_reported_as_a_mass_that_matches_its_boxes(a0001) -> None:
    folder, image, findings, array = a0001
    masses = [n for n in findings["nodules"] if n["kind"] == "mass"]
    assert masses, "no mass reported"
    assert all(n["long_axis_mm"] > 30 for n in masses)
    assert findings["detection"]["operating_point"] == "balanced"
    mask = np.isin(array, [labels.nodule(n["id"]).value for n in masses])
    overlap = box_overlap(mask, read_boxes(folder, image), float(np.prod(image.GetSpacing())) / 1000.0)
    print(f"A0001: {overlap}")
    assert overlap.box_slices == 11
    assert overlap.slices_iou_0_5 >= 0.8


def test_no_lesion_reaches_beyond_the_lungs_neighbourhood(a0001) -> None:
    _folder, image, _findings, array = a0001
    lungs = np.isin(array, [labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value])
    lesions = array >= labels.NODULE_BASE_VALUE
    assert lesions.any()
    # every lesion voxel lies within 30 mm of aerated lung (no hilum-to-mediastinum outlines)
    near = near_lungs(lungs, tuple(float(s) for s in reversed(image.GetSpacing())), step=1)
    assert np.all(near[lesions])
