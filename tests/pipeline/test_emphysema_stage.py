"""The emphysema stage: densitometry by default, the demonstration scanner's probability only when asked for.

The phantom runs take about a second each (lungs and emphysema only); the scanner is the shipped,
bundled ``convlstm_scanner``, whose weights are demonstration weights.
"""

from __future__ import annotations

import dataclasses
import html
import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from synthetic_scans import write_dicom_series

from lungai.data.phantom import PhantomConfig, make_phantom
from lungai.inference.emphysema import (
    DEMONSTRATION_CAVEAT,
    HIGH_LAA_950_PERCENT,
    LOW_LAA_950_PERCENT,
    SCANNER_MODEL,
    disagreement_warning,
    is_demonstration,
    probability_caveat,
    scanner_by_default,
)
from lungai.io.findings import load_findings
from lungai.pipeline.config import RunConfig
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.runner import run_pipeline
from lungai.preprocessing.densitometry import LAA_856_NOTE
from lungai.weights.manifest import MODEL_FILES, manifest_dict, packaged_dir, read_manifest

TASKS = "lungs,emphysema"


@pytest.fixture(scope="module")
def phantom_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "chest.nrrd"
    sitk.WriteImage(make_phantom().image, str(path), True)
    return path


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the models the run asks its ModelStore for."""
    names: list[str] = []
    get = ModelStore.get

    def recording(self: ModelStore, name: str):
        names.append(name)
        return get(self, name)

    monkeypatch.setattr(ModelStore, "get", recording)
    return names


def _run(scan: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run_cli(["run", str(scan), "-o", str(out), "--tasks", TASKS, "--device", "cpu", "--progress", "none",
                    *extra], capsys)


def _scanner_manifest(folder: Path, training_data: list[str]) -> Path:
    """A manifest bundling the shipped scanner files, with its entry's ``training_data`` replaced."""
    entry = read_manifest().get(SCANNER_MODEL)
    (folder / SCANNER_MODEL).mkdir(parents=True)
    for filename in MODEL_FILES:
        shutil.copyfile(packaged_dir() / SCANNER_MODEL / filename, folder / SCANNER_MODEL / filename)
    changed = dataclasses.replace(entry, training_data=tuple(training_data))
    (folder / "manifest.json").write_text(json.dumps(manifest_dict([changed])))
    return folder / "manifest.json"


@pytest.mark.parametrize(("probability", "laa_950", "rule"), [
    (0.93, 1.2, "probability >= 0.5 with LAA-950 < 5 %"),  # the shipped weights on normal scans
    (0.20, 13.0, "probability < 0.5 with LAA-950 >= 10 %"),  # ... and on an emphysematous one
    (0.50, 4.99, "probability >= 0.5 with LAA-950 < 5 %"),
    (0.49, 10.0, "probability < 0.5 with LAA-950 >= 10 %"),
    (0.50, 5.0, None),  # 5-10 %: either answer is plausible
    (0.49, 9.99, None),
    (0.90, 12.0, None),  # agreeing
    (0.10, 1.0, None),
])
def test_the_disagreement_rule(probability: float, laa_950: float, rule: str | None) -> None:
    assert (LOW_LAA_950_PERCENT, HIGH_LAA_950_PERCENT) == (5.0, 10.0)
    warning = disagreement_warning(probability, laa_950)
    if rule is None:
        assert warning is None
    else:
        assert warning is not None and f"({rule})" in warning
        assert f"probability {probability:.2f}" in warning and f"LAA-950 {laa_950:.1f} %" in warning


def test_the_shipped_scanner_weights_are_marked_as_demonstration_weights() -> None:
    manifest = read_manifest()
    entry = manifest.get(SCANNER_MODEL)
    assert is_demonstration(entry) and not scanner_by_default(manifest)
    assert probability_caveat(manifest) == DEMONSTRATION_CAVEAT
    validated = dataclasses.replace(entry, training_data=("real CT with report-derived emphysema labels",))
    assert not is_demonstration(validated)
    assert is_demonstration(dataclasses.replace(entry, training_data=("x", "Demonstration only: simulated")))


def test_a_default_run_has_no_probability_and_loads_no_scanner(phantom_scan: Path, tmp_path: Path, loaded: list[str],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(phantom_scan, tmp_path / "out", capsys)
    findings = load_findings(tmp_path / "out" / "findings.json")
    emphysema = findings["emphysema"]
    assert code == 0 and loaded == [] and findings["run"]["weights"] == []
    assert (emphysema["model_probability"], emphysema["model"], emphysema["model_caveat"]) == (None, None, None)
    assert emphysema["densitometry"]["total"]["laa_950_percent"] < 5
    assert "probability" not in stdout and "LAA-950" in stdout
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "emphysema-probability" not in report and "LAA-856 is an expiratory (air-trapping) measure" in report


def test_the_opt_in_reports_the_probability_with_its_caveat(phantom_scan: Path, tmp_path: Path, loaded: list[str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(phantom_scan, tmp_path / "out", capsys, "--emphysema-probability")
    findings = load_findings(tmp_path / "out" / "findings.json")
    emphysema = findings["emphysema"]
    sha256 = read_manifest().get(SCANNER_MODEL).sha256
    assert code == 0 and loaded == [SCANNER_MODEL]
    assert 0.0 <= emphysema["model_probability"] <= 1.0
    assert emphysema["model"] == {"name": SCANNER_MODEL, "revision": "unpublished", "sha256": sha256}
    assert emphysema["model_caveat"] == DEMONSTRATION_CAVEAT
    assert findings["run"]["weights"] == [emphysema["model"]]
    assert (f"Emphysema: probability {emphysema['model_probability']:.2f} (model estimate, not a diagnosis; "
            f"{DEMONSTRATION_CAVEAT})") in stdout
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "emphysema-probability" in report and DEMONSTRATION_CAVEAT in report


def test_a_probability_contradicting_laa_950_gets_a_warning(phantom_scan: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("lungai.inference.emphysema.emphysema_probability", lambda *args: 0.93)
    code, stdout, _ = _run(phantom_scan, tmp_path / "out", capsys, "--emphysema-probability")
    findings = load_findings(tmp_path / "out" / "findings.json")
    laa_950 = findings["emphysema"]["densitometry"]["total"]["laa_950_percent"]
    expected = disagreement_warning(0.93, laa_950)
    assert code == 0 and expected is not None
    assert findings["emphysema"]["warnings"] == [expected] and expected in findings["warnings"]
    assert f"Warning: {expected}" in stdout
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert report.count(html.escape(expected)) == 2  # beside the densitometry and among the warnings


def test_the_opt_in_needs_the_scanner_weights(phantom_scan: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"manifest_version": 1, "models": []}')
    code, _, stderr = _run(phantom_scan, tmp_path / "o", capsys, "--emphysema-probability",
                           "--weights-manifest", str(manifest))
    assert code == 10 and "--emphysema-probability needs the convlstm_scanner weights" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()
    code, _, _ = _run(phantom_scan, tmp_path / "plain", capsys, "--weights-manifest", str(manifest))
    findings = load_findings(tmp_path / "plain" / "findings.json")
    assert code == 0 and not any(SCANNER_MODEL in warning for warning in findings["warnings"])


def test_weights_not_marked_as_demonstration_run_by_default(phantom_scan: Path, tmp_path: Path,
                                                            loaded: list[str]) -> None:
    manifest = _scanner_manifest(tmp_path / "package", ["real CT with report-derived emphysema labels"])
    assert scanner_by_default(read_manifest(manifest))
    result = run_pipeline(RunConfig(input=phantom_scan, output=tmp_path / "out", tasks=("emphysema",), device="cpu",
                                    manifest=manifest))
    emphysema = result.findings.emphysema
    assert loaded == [SCANNER_MODEL] and emphysema is not None
    assert emphysema.model_probability is not None and emphysema.model_caveat is None

    marked = _scanner_manifest(tmp_path / "marked", ["DEMONSTRATION ONLY: simulated emphysema"])
    result = run_pipeline(RunConfig(input=phantom_scan, output=tmp_path / "plain", tasks=("emphysema",), device="cpu",
                                    manifest=marked))
    assert loaded == [SCANNER_MODEL] and result.findings.emphysema.model_probability is None


def test_densitometry_warnings_from_the_dicom_header_reach_every_output(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The phantom as a 5 mm DICOM series with a sharp kernel and a contrast agent in its header."""
    import pydicom

    phantom = make_phantom(PhantomConfig(size=(192, 192, 50), spacing_mm=(1.5, 1.5, 5.0)))
    folder = tmp_path / "dicom"
    write_dicom_series(folder, sitk.GetArrayFromImage(phantom.image), spacing=(1.5, 1.5, 5.0))
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ConvolutionKernel, ds.ContrastBolusAgent = "LUNG", "IV"
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                        "ReferringPhysicianName", "SeriesNumber"):  # what the DICOM SEG copies
            setattr(ds, keyword, "1" if keyword == "SeriesNumber" else "")
        ds.save_as(path)
    code, stdout, _ = _run(folder, tmp_path / "out", capsys)
    findings = load_findings(tmp_path / "out" / "findings.json")
    warnings = findings["emphysema"]["warnings"]
    assert code == 0 and len(warnings) == 3
    assert [text in warning for text, warning in zip(("5.0 mm thick", "kernel 'LUNG'", "ContrastBolusAgent 'IV'"),
                                                    warnings)] == [True] * 3
    assert findings["emphysema"]["notes"] == [LAA_856_NOTE]
    assert all(warning in findings["warnings"] and f"Warning: {warning}" in stdout for warning in warnings)
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert all(html.escape(warning) in report for warning in warnings)
