"""``lungai run`` end to end on the real LIDC test scans (DICOM zip and NRRD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from shared_data import require

from lungai import labels
from lungai.io.findings import load_findings
from lungai.io.reader import read_scan
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline

SCANS = {
    "LIDC-IDRI-0001": Path("lidc_scans/LIDC-IDRI-0001/dicom.zip"),
    "LIDC-IDRI-0002": Path("lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd"),
}
STEMS = {"LIDC-IDRI-0001": "LIDC-IDRI-0001_20000101_3000566", "LIDC-IDRI-0002": "LIDC-IDRI-0002"}


@pytest.fixture(scope="module", params=sorted(SCANS))
def run_output(request: pytest.FixtureRequest, data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    scan = require(data_root / SCANS[request.param])
    out = tmp_path_factory.mktemp(request.param) / "out"
    result = run_pipeline(RunConfig(input=scan, output=out, tasks=("lungs", "emphysema"), device="cpu"))
    return request.param, scan, out, result


@pytest.mark.slow
def test_lung_volumes_in_adult_range(run_output) -> None:
    _name, _scan, out, _result = run_output
    findings = load_findings(out / "findings.json")
    for side in ("right", "left"):
        assert 1000 <= findings["lungs"][side]["volume_ml"] <= 4500
    density = findings["emphysema"]["densitometry"]["total"]
    assert 0 <= density["laa_950_percent"] <= 100
    assert -1000 < density["perc15_hu"] < -700


@pytest.mark.slow
def test_seg_nrrd_reads_back_in_slicerio(run_output, data_root: Path) -> None:
    name, scan, out, _result = run_output
    segmentation = slicerio.read_segmentation(str(out / f"{STEMS[name]}.seg.nrrd"))
    segments = {segment["name"]: segment for segment in segmentation["segments"]}
    assert set(segments) == {labels.LUNG_RIGHT.name, labels.LUNG_LEFT.name}
    right = segments[labels.LUNG_RIGHT.name]
    assert right["labelValue"] == labels.LUNG_RIGHT.value
    np.testing.assert_allclose(right["color"], labels.LUNG_RIGHT.color, atol=1e-3)
    assert right["terminology"]["type"][1] == labels.LUNG_RIGHT.type[1]
    image = read_scan(scan).image
    ijk_to_lps = segmentation["ijkToLPS"]
    np.testing.assert_allclose(ijk_to_lps[:3, 3], image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(ijk_to_lps[:3, :3], axis=0), image.GetSpacing(), atol=1e-5)


@pytest.mark.slow
def test_nifti_and_seg_nrrd_agree(run_output) -> None:
    name, _scan, out, _result = run_output
    seg = sitk.ReadImage(str(out / f"{STEMS[name]}.seg.nrrd"))
    nifti = sitk.ReadImage(str(out / f"{STEMS[name]}_labels.nii.gz"))
    np.testing.assert_allclose(seg.GetOrigin(), nifti.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(seg.GetDirection(), nifti.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg), sitk.GetArrayFromImage(nifti))


@pytest.mark.slow
def test_findings_describe_the_input(run_output, data_root: Path) -> None:
    name, _scan, out, result = run_output
    findings = load_findings(out / "findings.json")
    if name == "LIDC-IDRI-0001":
        expected = (data_root / "lidc_scans" / name / "SERIES_UID").read_text().strip()
        assert findings["input"]["series_uid"] == expected and findings["input"]["format"] == "dicom-zip"
        assert "patient_id" not in findings["input"]
    else:
        assert findings["input"]["format"] == "nrrd"
    assert findings["run"]["device"] == "cpu"
    assert result.findings.lungs["total"].volume_ml == pytest.approx(findings["lungs"]["total"]["volume_ml"])
