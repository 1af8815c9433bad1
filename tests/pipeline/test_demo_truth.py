"""The demo's truth table: the matching rule, its text, and the phantom demo's report (no model run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lungai.pipeline.demo_truth import MIN_MATCH_RADIUS_MM, FoundNodule, KnownNodule, format_comparison, match_nodules


def _found(nodule_id: int, centre: tuple[float, float, float], long_axis: float = 10.0,
           volume: float = 500.0, kind: str = "solid") -> FoundNodule:
    return FoundNodule(id=nodule_id, centre_lps_mm=centre, long_axis_mm=long_axis, volume_mm3=volume, type=kind,
                       detection_score=0.9 - 0.1 * nodule_id)


BIG = KnownNodule("solid", (0.0, 0.0, 0.0), 20.0, "solid", long_axis_mm=21.0, volume_mm3=4000.0)
SMALL = KnownNodule("ground-glass", (50.0, 0.0, 0.0), 6.0, "ground-glass", long_axis_mm=6.5, volume_mm3=110.0)


def test_the_module_needs_no_torch() -> None:
    code = "import sys, lungai.pipeline.demo_truth; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_match_radius_is_the_radius_with_a_5_mm_floor() -> None:
    assert BIG.match_radius_mm == 10.0
    assert SMALL.match_radius_mm == MIN_MATCH_RADIUS_MM == 5.0


def test_hits_misses_and_false_positives() -> None:
    found = [_found(1, (9.9, 0.0, 0.0)), _found(2, (54.0, 0.0, 0.0)), _found(3, (0.0, 30.0, 0.0))]
    comparison = match_nodules([BIG, SMALL], found)
    assert [m.found.id if m.found else None for m in comparison.matches] == [1, 2]
    assert comparison.matches[0].distance_mm == pytest.approx(9.9)
    assert comparison.matches[1].distance_mm == pytest.approx(4.0)  # inside the 5 mm floor, beyond the 3 mm radius
    assert [f.id for f in comparison.false_positives] == [3]
    assert comparison.num_found == 2 and comparison.duplicates == ()


def test_just_outside_the_radius_is_a_miss() -> None:
    comparison = match_nodules([BIG, SMALL], [_found(1, (10.1, 0.0, 0.0)), _found(2, (55.2, 0.0, 0.0))])
    assert comparison.num_found == 0
    assert [f.id for f in comparison.false_positives] == [1, 2]


def test_pairs_are_one_to_one_closest_first_and_extras_are_duplicates() -> None:
    near = KnownNodule("solid", (0.0, 0.0, 0.0), 20.0)
    beside = KnownNodule("solid", (12.0, 0.0, 0.0), 20.0)
    # finding 1 is within both nodules' radius but closest to `beside`; finding 2 only reaches `near`
    found = [_found(1, (9.0, 0.0, 0.0)), _found(2, (-8.0, 0.0, 0.0)), _found(3, (1.0, 0.0, 0.0))]
    comparison = match_nodules([near, beside], found)
    assert [m.found.id for m in comparison.matches] == [3, 1]
    assert [f.id for f in comparison.duplicates] == [2]
    assert comparison.false_positives == ()


def test_findings_at_other_marks_are_not_false_positives() -> None:
    mark = KnownNodule("a reader's non-nodule mark", (100.0, 0.0, 0.0), 0.0)
    comparison = match_nodules([BIG], [_found(1, (103.0, 0.0, 0.0)), _found(2, (110.0, 0.0, 0.0))], [mark])
    assert [(f.id, m.name) for f, m in comparison.at_other_marks] == [(1, mark.name)]
    assert [f.id for f in comparison.false_positives] == [2]
    assert comparison.matches[0].found is None


def test_nothing_found() -> None:
    comparison = match_nodules([BIG, SMALL], [])
    assert comparison.num_found == 0 and comparison.false_positives == ()


def test_table_text() -> None:
    found = [_found(1, (1.0, 0.0, 0.0), long_axis=23.1, volume=4400.0), _found(2, (0.0, 40.0, 0.0), kind="part-solid")]
    text = format_comparison(match_nodules([BIG, SMALL], found), "Phantom truth vs LungAI")
    lines = text.splitlines()
    assert lines[0] == "Phantom truth vs LungAI:"
    assert "max(radius, 5 mm)" in lines[1]
    big_row = next(line for line in lines if "1 solid 20 mm" in line)
    assert "found: #1 solid" in big_row and "1.0 mm" in big_row
    assert "23.1 vs 21.0 mm (+10%)" in big_row and "4400 vs 4000 mm3 (+10%)" in big_row
    assert next(line for line in lines if "2 ground-glass 6 mm" in line).endswith("MISSED")
    assert "Found 1 of 2 known nodules; 1 false positive(s)" in text
    assert "false positive: #2 part-solid 10.0 mm, 500 mm3 at LPS (0, 40, 0)" in text


def test_phantom_truth_is_measured_on_its_labels() -> None:
    from lungai.data.phantom import make_phantom
    from lungai.pipeline.demo import phantom_truth

    phantom = make_phantom()
    truth = phantom_truth(phantom)
    assert [t.type for t in truth] == [n.type for n in phantom.nodules]
    for known, nodule in zip(truth, phantom.nodules):
        assert known.centre_lps_mm == nodule.centre_lps_mm
        sphere = 3.14159 / 6.0 * nodule.diameter_mm ** 3
        assert 0.5 * sphere < known.volume_mm3 < 1.2 * sphere
        # the caliper width of a lobulated, voxelised sphere: about the diameter, never far off
        assert nodule.diameter_mm - 1.0 < known.long_axis_mm < 1.2 * nodule.diameter_mm + 1.5


def test_run_demo_reports_what_the_run_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's report from a stand-in run: one phantom nodule found, one false positive."""
    import SimpleITK as sitk

    from lungai.data.phantom import NODULES
    from lungai.io.findings import Centroid, Findings, InputInfo, Nodule, RunInfo
    from lungai.pipeline import demo
    from lungai.pipeline.runner import RunResult

    grid = sitk.Image([8, 8, 8], sitk.sitkInt16)

    def fake_run(config, on_event):  # noqa: ANN001 - stands in for run_pipeline
        assert Path(config.input).is_file()
        nodules = [Nodule(id=i, centroid=Centroid.from_lps(centre, grid), long_axis_mm=15.0, short_axis_mm=12.0,
                          volume_mm3=1500.0, mean_hu=10.0, type="solid", detection_score=0.9)
                   for i, centre in ((1, NODULES[1].centre_lps_mm), (2, (0.0, 0.0, 0.0)))]
        findings = Findings(input=InputInfo("phantom_ct.nrrd", "nrrd", None, None, (8, 8, 8), (1.0, 1.0, 1.0)),
                            nodules=nodules, run=RunInfo("0", ["lungs", "nodules"], "cpu", "2025-01-01T00:00:00Z"))
        return RunResult(findings=findings, output=config.output)

    monkeypatch.setattr(demo, "run_pipeline", fake_run)
    outcome = demo.run_demo(tmp_path / "demo")
    assert (tmp_path / "demo" / demo.PHANTOM_FILE).is_file()
    assert outcome.comparison.num_found == 1 and len(outcome.comparison.false_positives) == 1
    assert "Phantom truth: right lung" in outcome.report
    assert "Found 1 of 4 known nodules; 1 false positive(s)" in outcome.report
    assert outcome.report.count("MISSED") == 3
