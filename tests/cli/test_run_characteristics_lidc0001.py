"""``lungai run`` on the test patient LIDC-IDRI-0001 reports its nodule's suspicion and characteristics.

The scan's nodule (about 25 mm, rated 5, 5, 5 and 4 for malignancy by its four readers; LungAI
measures it at just over 30 mm: a mass) is found at ``specific`` by the shipped weights, so it
gets an estimate of radiologists' suspicion on LIDC and its characteristics; findings.json,
nodules.csv and the console say the same, and the CNN ensemble is not loaded. LIDC-IDRI-0001 is
never used for training or tuning.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest
from shared_data import require

from lungai.cli.main import main
from lungai.io.findings import SUSPICION_LABEL, load_findings
from lungai.pipeline.real_demo import REFERENCE_NODULE
from lungai.weights.manifest import read_manifest

pytestmark = pytest.mark.slow


def _run(args: list[str]) -> tuple[int, str]:
    """``lungai ARGS`` in this process (a module-scoped fixture cannot use capsys); exit code and stdout."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if "measured_nodule" not in read_manifest().models:
        pytest.skip("the shipped measured_nodule weights are not in weights/manifest.json")
    scan = require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")
    out = tmp_path_factory.mktemp("lidc0001") / "out"
    code, console = _run(["run", str(scan), "-o", str(out), "--tasks", "nodules,malignancy",
                          "--sensitivity", "specific"])
    assert code == 0, console
    return out, console


def _the_nodule(findings: dict) -> dict:
    centre = REFERENCE_NODULE.centre_lps_mm
    return min(findings["nodules"],
               key=lambda n: sum((a - b) ** 2 for a, b in zip(n["centroid"]["lps_mm"], centre)))


def test_the_nodule_has_characteristics_and_a_named_suspicion_estimate(run: tuple[Path, str]) -> None:
    out, _ = run
    findings = load_findings(out / "findings.json")
    assert findings["schema_version"] == "2.2"
    nodule = _the_nodule(findings)
    characteristics, malignancy = nodule["characteristics"], nodule["malignancy"]
    assert characteristics["texture"] in ("ground-glass", "part-solid", "solid")
    for name in ("texture", "calcification", "spiculation", "lobulation", "ill_defined_margin"):
        assert 0.0 <= characteristics[f"{name}_probability"] <= 1.0
    assert malignancy["models"] == ["measured_nodule"] and malignancy["estimates"] == SUSPICION_LABEL
    assert malignancy["probability"] > 0.5  # four readers rated it 5, 5, 5, 4
    # the readers agree on these: texture 5, 5, 5, 4 (solid) and calcification 6 (absent) from all four
    assert characteristics["texture"] == "solid" and "calcification" not in characteristics["present"]
    assert {w["name"] for w in findings["run"]["weights"]}.isdisjoint({"resnet50_3d", "nodule_cnn2d"})


def test_csv_and_console_report_the_same(run: tuple[Path, str]) -> None:
    out, console = run
    nodule = _the_nodule(load_findings(out / "findings.json"))
    with next(out.glob("*nodules.csv")).open(newline="") as stream:
        row = next(r for r in csv.DictReader(stream) if int(r["id"]) == nodule["id"])
    assert row["texture"] == nodule["characteristics"]["texture"]
    assert float(row["calcification_probability"]) == nodule["characteristics"]["calcification_probability"]
    assert row["malignancy_estimates"] == SUSPICION_LABEL
    assert SUSPICION_LABEL in console and f"texture {nodule['characteristics']['texture']}" in console
