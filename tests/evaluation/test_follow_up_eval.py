"""Follow-up scoring on hand-made truth and output files whose right answers are worked out by hand.

Pair ``p1`` (interval 100 days; the registration transform is a translation by (-9, 0, 0) mm,
truth moves every nodule by (10, 0, 0) mm, so each residual is 1 mm, n6's 3.16 mm):

- n1 matched, 500 -> 1000 mm3, 10 -> 12 mm: output matches it (detector both sides),
  1100 mm3 (120 % against 100 %: 20 points), VDT 90 against 100 days (within 25 %), flag right.
- n2 matched, stable: matched correctly, volume error 0.
- n3 matched: missed by the output.
- n6 matched, 300 -> 600 mm3, 9 -> 11 mm: its prior is matched to the NEW nodule n5 (a wrong
  match of n6 and of n5); its current is reported as a separate new finding.
- n4 resolved: reported as resolved (right).
- one output entry far from every nodule (unassociated), and a second, "new" finding on n1's
  current position (a duplicate of a correct match).

Pair ``p2``: one stable nodule, matched correctly. Pair ``p3``: no results at all.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.evaluation.follow_up_eval import TARGETS, FollowUpEvalConfig, associate, evaluate_follow_up, evaluate_pair
from tests.cli_runner import run_cli

REPO = Path(__file__).resolve().parents[2]


def _m(centre: list[float], volume: float, diameter: float) -> dict:
    return {"centre_lps_mm": centre, "volume_mm3": volume, "mean_diameter_mm": diameter, "long_axis_mm": diameter,
            "short_axis_mm": diameter}


def _truth_nodule(nid: str, status: str, prior: dict | None, current: dict | None, vdt: float | None = None,
                  flag: bool | None = None) -> dict:
    return {"id": nid, "voi": f"V_{nid}", "texture": 5, "status": status, "prior": prior, "current": current,
            "volume_factor": None if prior is None or current is None else current["volume_mm3"] / prior["volume_mm3"],
            "vdt_days": vdt, "lung_rads_growth": flag}


def _truth(pair_id: str, nodules: list[dict]) -> dict:
    return {"schema": "lungai-follow-up-truth", "schema_version": "1.0", "pair_id": pair_id, "split": "test",
            "background": "LIDC-IDRI-0001", "prior_date": "2020-01-01", "current_date": "2020-04-10",
            "interval_days": 100, "transform": {"prior_to_current_affine_lps": np.eye(4).tolist(),
                                                "deformation_max_mm": 0.0}, "nodules": nodules}


def _finding(centre: list[float], volume: float, diameter: float, found_by: str = "detector") -> dict:
    return {**_m(centre, volume, diameter), "finding_index": 0 if found_by == "detector" else None,
            "found_by": found_by}


def _entry(status: str, prior: dict | None, current: dict | None, vdt: float | None = None) -> dict:
    growth = None
    if prior and current:
        growth = {"interval_days": 100, "volume_change_mm3": current["volume_mm3"] - prior["volume_mm3"],
                  "volume_change_pct": 100 * (current["volume_mm3"] / prior["volume_mm3"] - 1),
                  "mean_diameter_change_mm": current["mean_diameter_mm"] - prior["mean_diameter_mm"],
                  "vdt_days": vdt, "vdt_note": ""}
    return {"status": status, "prior": prior, "current": current, "prior_centre_in_current_lps_mm": None,
            "growth": growth, "lung_rads": None, "fleischner": None}


def _output(entries: list[dict]) -> dict:
    return {"schema": "lungai-follow-up", "schema_version": "1.0", "prior": {}, "current": {}, "interval_days": 100,
            "registration": {"transform": "registration.tfm"}, "nodules": entries, "warnings": []}


P1_TRUTH = [
    _truth_nodule("n1", "matched", _m([0, 0, 0], 500, 10), _m([10, 0, 0], 1000, 12), vdt=100.0, flag=True),
    _truth_nodule("n2", "matched", _m([50, 0, 0], 300, 8), _m([60, 0, 0], 300, 8), flag=False),
    _truth_nodule("n3", "matched", _m([-50, 0, 0], 200, 7), _m([-40, 0, 0], 200, 7), flag=False),
    _truth_nodule("n4", "resolved", _m([0, 50, 0], 100, 6), None),
    _truth_nodule("n5", "new", None, _m([10, -50, 0], 100, 6)),
    _truth_nodule("n6", "matched", _m([0, 0, 60], 300, 9), _m([10, 0, 63], 600, 11), vdt=100.0, flag=True),
]
P1_OUTPUT = [
    _entry("matched", _finding([0.5, 0, 0], 500, 10), _finding([10.5, 0, 0], 1100, 12.5), vdt=90.0),
    _entry("matched", _finding([50, 1, 0], 300, 8), _finding([60, 1, 0], 300, 8.2, "mapped_segmentation")),
    _entry("matched", _finding([0, 0, 60], 300, 9), _finding([11, -50, 0], 100, 6)),
    _entry("new", None, _finding([10, 0, 62], 600, 11)),
    _entry("resolved", _finding([1, 50, 0], 100, 6), None),
    _entry("matched", _finding([200, 200, 200], 50, 4), _finding([210, 200, 200], 50, 4)),
    _entry("new", None, _finding([12, 1, 0], 30, 4)),
]
P2_TRUTH = [_truth_nodule("n1", "matched", _m([0, 0, 0], 400, 9), _m([10, 0, 0], 400, 9), flag=False)]
P2_OUTPUT = [_entry("matched", _finding([0, 0, 0], 410, 9), _finding([10, 0, 0], 400, 9))]


def _write_result(folder: Path, output: dict, transform: sitk.Transform) -> None:
    folder.mkdir(parents=True)
    (folder / "follow_up.json").write_text(json.dumps(output))
    sitk.WriteTransform(transform, str(folder / "registration.tfm"))


@pytest.fixture()
def fixture_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """PAIRS (p1, p2, p3 as test pairs, t1 as a tune pair) and RESULTS (p1, p2)."""
    pairs, results = tmp_path / "pairs", tmp_path / "results"
    truths = {"p1": P1_TRUTH, "p2": P2_TRUTH, "p3": P2_TRUTH, "t1": P2_TRUTH}
    for pair_id, nodules in truths.items():
        (pairs / pair_id).mkdir(parents=True)
        (pairs / pair_id / "truth.json").write_text(json.dumps(_truth(pair_id, nodules)))
    with (pairs / "pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_id", "split", "background", "prior", "current", "prior_date", "current_date"])
        for pair_id in truths:
            writer.writerow([pair_id, "tune" if pair_id == "t1" else "test", "LIDC-IDRI-0001",
                             f"{pair_id}/prior.nrrd", f"{pair_id}/current.nrrd", "2020-01-01", "2020-04-10"])
    _write_result(results / "p1", _output(P1_OUTPUT), sitk.TranslationTransform(3, (-9.0, 0.0, 0.0)))
    _write_result(results / "p2", _output(P2_OUTPUT), sitk.TranslationTransform(3, (-10.0, 0.0, 0.0)))
    return pairs, results


def test_association_takes_the_nearest_nodule_within_its_radius() -> None:
    truth = [_truth_nodule("a", "matched", _m([0, 0, 0], 1, 20), None),
             _truth_nodule("b", "matched", _m([9, 0, 0], 1, 4), None)]
    entries = [{"prior": _finding(c, 1, 1)} for c in ([6, 0, 0], [9.5, 0, 0], [15.1, 0, 0], [0, 10.5, 0])]
    entries.append({"prior": None})
    # a's radius is 10 mm (half of 20), b's is 5 mm (the minimum)
    assert associate(truth, entries, "prior", FollowUpEvalConfig()) == ["b", "b", None, None, None]


def test_pair_outcomes_by_hand(fixture_dirs: tuple[Path, Path]) -> None:
    truth = json.loads((fixture_dirs[0] / "p1" / "truth.json").read_text())
    result = evaluate_pair(truth, (_output(P1_OUTPUT), sitk.TranslationTransform(3, (-9.0, 0.0, 0.0))))
    by_id = {n["id"]: n for n in result["nodules"]}
    assert {k: v["outcome"] for k, v in by_id.items()} == {
        "n1": "correct", "n2": "correct", "n3": "missed", "n4": "unpaired", "n5": "wrong", "n6": "wrong"}
    assert [by_id[k]["found_by_detector_both"] for k in ("n1", "n2", "n3", "n6")] == [True, False, False, True]
    assert by_id["n1"]["volume_change_error_pct"] == pytest.approx(20.0)
    assert by_id["n2"]["volume_change_error_pct"] == pytest.approx(0.0)
    assert by_id["n6"]["volume_change_error_pct"] is None
    assert by_id["n1"]["vdt_ok"] is True and by_id["n6"]["vdt_ok"] is False and not by_id["n2"]["vdt_scored"]
    assert by_id["n6"]["residual_mm"] == pytest.approx(math.sqrt(10))
    assert result["unassociated_entries"] == 1 and result["duplicate_entries"] == 1
    assert result["growth_flag_right"] is False  # n6 grew, but its match is wrong


def test_the_outputs_own_change_and_flag_are_scored() -> None:
    """The output's growth block (paired volumes, its flag) is scored, not its two scans' sizes."""
    truth = _truth("p2", P2_TRUTH)
    entry = _entry("matched", _finding([0, 0, 0], 410, 9), _finding([10, 0, 0], 400, 9))
    entry["growth"].update(volume_change_pct=1.0, lung_rads_growth=True)
    result = evaluate_pair(truth, (_output([entry]), sitk.TranslationTransform(3, (-10.0, 0.0, 0.0))))
    assert result["nodules"][0]["volume_change_error_pct"] == pytest.approx(1.0)
    assert result["nodules"][0]["growth_flag_output"] is True and result["growth_flag_right"] is False


def test_overall_numbers_and_targets_by_hand(fixture_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    pairs, results = fixture_dirs
    report = evaluate_follow_up(pairs, results, tmp_path / "eval.json", split="test")
    o = report["overall"]
    assert o["num_pairs"] == 3 and o["pairs_without_results"] == ["p3"]
    # on both scans: p1 n1 n2 n3 n6, p2 n1, p3 n1; correct: p1 n1 n2, p2 n1
    assert o["num_nodules_both_scans"] == 6 and o["overall_match_rate"] == pytest.approx(3 / 6)
    # found by the detector on both: p1 n1 and n6, p2 n1 (p1 n2's current is a mapped segmentation)
    assert o["num_found_by_detector_both"] == 3 and o["both_found_match_rate"] == pytest.approx(2 / 3)
    # found by the detector on at least one scan: those and p1 n2 (p1 n3 and p3 n1 were never found)
    assert o["num_found_by_detector_once"] == 4 and o["detected_once_match_rate"] == pytest.approx(3 / 4)
    assert o["new_resolved_wrong_matches"] == 1
    residuals = [1, 1, 1, math.sqrt(10), 0]  # p1 n1 n2 n3 n6, p2 n1 (p3 has no transform)
    assert o["residual_median_mm"] == pytest.approx(1.0)
    assert o["residual_p95_mm"] == pytest.approx(np.percentile(residuals, 95))
    p2_error = abs(100 * (400 / 410 - 1))  # p2's output: 410 -> 400 mm3 where the truth is stable
    assert o["volume_change_mae_pct"] == pytest.approx((20 + 0 + p2_error) / 3)
    assert o["volume_change_median_error_pct"] == pytest.approx(p2_error)  # median of 0, 2.4 and 20
    assert o["vdt_within_25pct_rate"] == pytest.approx(1 / 2) and o["num_vdt_scored"] == 2
    assert o["growth_flag_pair_rate"] == pytest.approx(1 / 3)  # only p2 is right; p3 has no results
    verdicts = {t["name"]: t["passed"] for t in report["targets"]}
    assert verdicts == {"both_found_match_rate": False, "new_resolved_wrong_matches": False,
                        "overall_match_rate": False, "residual_median_mm": True, "residual_p95_mm": True,
                        "volume_change_median_error_pct": True, "vdt_within_25pct_rate": False,
                        "growth_flag_pair_rate": False}
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["overall"] == o and len(written["pairs"]) == 3


def test_a_perfect_output_passes_every_target(fixture_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    pairs, results = fixture_dirs
    report = evaluate_follow_up(pairs, results, tmp_path / "tune.json", split="tune")
    assert report["overall"]["pairs_without_results"] == ["t1"]
    _write_result(results / "t1", _output(P2_OUTPUT[:1]), sitk.TranslationTransform(3, (-10.0, 0.0, 0.0)))
    report = evaluate_follow_up(pairs, results, tmp_path / "tune.json", split="tune")
    assert [t["passed"] for t in report["targets"]] == [True] * 6 + [None, True]  # no growing nodule: VDT n/a
    assert len(TARGETS) == 8


def test_cli_prints_pass_and_fail(fixture_dirs: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = fixture_dirs
    code, out, _ = run_cli(["evaluate", "follow-up", "--pairs", str(pairs), "--results", str(results),
                            "-o", str(tmp_path / "e.json")], capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert any(line.startswith("PASS") and "median" in line for line in lines)
    assert any(line.startswith("FAIL") and "wrong matches" in line for line in lines)
    assert sum(line.startswith(("PASS", "FAIL", "n/a")) for line in lines) == len(TARGETS)


def test_bad_inputs_give_clear_errors(fixture_dirs: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = fixture_dirs
    out = tmp_path / "e.json"
    with pytest.raises(InputNotFoundError, match="pairs.csv"):
        evaluate_follow_up(tmp_path, results, out)
    with pytest.raises(InputNotFoundError, match="results folder"):
        evaluate_follow_up(pairs, tmp_path / "none", out)
    (results / "p2" / "registration.tfm").unlink()
    with pytest.raises(UnreadableInputError, match="registration transform"):
        evaluate_follow_up(pairs, results, out)
    (results / "p1" / "follow_up.json").write_text('{"schema": "other"}')
    code, _, err = run_cli(["evaluate-follow-up", "--pairs", str(pairs), "--results", str(results),
                            "-o", str(out)], capsys)
    assert code == UnreadableInputError.exit_code and "not a lungai-follow-up file" in err
    assert "Traceback" not in err and not out.exists()


# -- benchmarks/follow_up_pairs.py --------------------------------------------------------------

@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/follow_up_pairs.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("follow_up_pairs", REPO / "benchmarks" / "follow_up_pairs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_arguments_and_command(bench: ModuleType, fixture_dirs: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pairs, results = fixture_dirs
    args = bench.parse_args(["--pairs", str(pairs), "--results", str(results), "--extra-args", "--device cpu"])
    assert args.eval == results / "evaluation_test.json" and args.split == "test"
    rows = bench.pair_rows(pairs, "test")
    assert [r["pair_id"] for r in rows] == ["p1", "p2", "p3"]
    command = bench.follow_up_command(Path("lungai"), pairs, rows[0], results / "p1", args.extra_args)
    assert command == ["lungai", "follow-up", str(pairs / "p1/prior.nrrd"), str(pairs / "p1/current.nrrd"), "-o",
                       str(results / "p1"), "--prior-date", "2020-01-01", "--current-date", "2020-04-10",
                       "--device", "cpu"]
    earlier = tmp_path / "earlier"
    reused = bench.follow_up_command(Path("lungai"), pairs, rows[0], results / "p1", "", earlier)
    assert reused[2:4] == [str(earlier / "p1" / "prior"), str(earlier / "p1" / "current")]
    assert bench.is_done(results / "p1") and not bench.is_done(results / "p3")
    for bad, message in ((["--pairs", str(tmp_path), "--results", str(results)], "has no pairs.csv"),
                         (["--pairs", str(pairs), "--results", str(results), "--timeout", "0"], "must be positive"),
                         (["--pairs", str(pairs)], "--results"),
                         (["--pairs", str(pairs), "--results", str(results), "--only", "t1"], "no test pair named t1")):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(bad)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_bench_skips_pairs_already_done(bench: ModuleType, fixture_dirs: tuple[Path, Path]) -> None:
    pairs, results = fixture_dirs
    args = bench.parse_args(["--pairs", str(pairs), "--results", str(results), "--split", "test",
                             "--lungai", str(results / "no-such-lungai")])
    (results / "p3").mkdir()
    (results / "p3" / "follow_up.json").write_text("{}")
    assert bench.run_pairs(args) == []  # every pair done: nothing runs (the executable does not even exist)
    assert not (results / "timings.csv").exists()
    (results / "p3" / "follow_up.json").unlink()
    args = bench.parse_args(["--pairs", str(pairs), "--results", str(results), "--only", "p1",
                             "--lungai", str(results / "no-such-lungai")])
    assert bench.run_pairs(args) == []  # p3 is not done, but only p1 was asked for
    args.only = []
    assert bench.run_pairs(args) == ["p3"]  # tried, and the missing executable is a failure, not a crash
    assert (results / "timings.csv").read_text().splitlines()[1].startswith("p3,127,")
