"""``lungai batch`` with a ``prior`` column: each such row is ``lungai follow-up PRIOR PATH``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from lungai.batch.cases import Case, read_case_csv
from lungai.batch.cohort import COHORT_FOLLOW_UP_COLUMNS, summarize_follow_up, write_cohort_tables
from lungai.batch.manifest import case_key
from lungai.errors import CaseListError, InputNotFoundError


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_prior_column_makes_a_follow_up_case(tmp_path: Path) -> None:
    table = _csv(tmp_path / "cases.csv", ["case_id,path,prior,prior_date,current_date",
                                          "p1,scans/now.nrrd,scans/then.nrrd,2021-02-03,2022-02-01",
                                          "p2,scans/other.nrrd,,,"])
    follow_up, plain = read_case_csv(table)
    assert follow_up.prior == tmp_path / "scans" / "then.nrrd"
    assert (follow_up.prior_date, follow_up.current_date) == ("2021-02-03", "2022-02-01")
    assert plain.prior is None and plain.prior_date is None


def test_a_date_that_is_not_iso_names_its_line(tmp_path: Path) -> None:
    table = _csv(tmp_path / "cases.csv", ["case_id,path,prior,prior_date", "p1,a.nrrd,b.nrrd,03/02/2021"])
    with pytest.raises(CaseListError, match="line 2: prior_date '03/02/2021' is not a date"):
        read_case_csv(table)


def test_the_prior_and_its_dates_are_part_of_the_resume_key(tmp_path: Path) -> None:
    scan, prior = tmp_path / "now.nrrd", tmp_path / "then.nrrd"
    scan.write_bytes(b"now")
    prior.write_bytes(b"then")
    case = Case("p1", scan, prior=prior, prior_date="2021-02-03")
    key = case_key(case, {})
    assert key != case_key(Case("p1", scan), {})
    assert key != case_key(Case("p1", scan, prior=prior, prior_date="2021-02-04"), {})
    prior.write_bytes(b"then, re-exported")
    assert key != case_key(case, {})


def test_follow_up_counts_and_table(tmp_path: Path) -> None:
    def row(status: str, change: str = "", category: str = "") -> dict[str, str]:
        return {**dict.fromkeys(COHORT_FOLLOW_UP_COLUMNS[1:], ""), "status": status,
                "mean_diameter_change_mm": change, "lung_rads_category": category}

    rows = [row("matched", "2.0", "4A"), row("matched", "1.5", "2"), row("matched", "-1.0", "2"),
            row("new", "", "3"), row("resolved")]
    summary = summarize_follow_up(rows)
    assert summary == {"follow_up_matched": 3, "follow_up_new": 1, "follow_up_resolved": 1,
                       "follow_up_growing": 1, "highest_follow_up_lung_rads": "4A"}
    entries = [{"case_id": "b", "status": "done", "summary": summary, "follow_up": rows},
               {"case_id": "a", "status": "failed", "exit_code": 3, "error": "no such scan"}]
    write_cohort_tables(tmp_path, entries)
    with (tmp_path / "cohort_follow_up.csv").open(newline="") as stream:
        written = list(csv.DictReader(stream))
    assert [r["case_id"] for r in written] == ["b"] * 5
    assert [r["status"] for r in written] == ["matched", "matched", "matched", "new", "resolved"]


@pytest.mark.slow
def test_a_follow_up_case_runs_in_the_batch(data_root: Path, tmp_path: Path) -> None:
    """A simulated pair (cip_small with real LIDC test-split nodules) as a CSV row with a prior."""
    from detection_cases import small_background

    from lungai.data.follow_up_sim import FollowUpSimConfig, PairSpec, pair_vois, simulate_pair

    config = FollowUpSimConfig(matched=2, resolved=1, new=1, min_diameter_mm=8.0, small_fraction=0.0,
                               edge_margin_mm=20.0)
    pair = simulate_pair(small_background(data_root), pair_vois(data_root, "test", config.min_diameter_mm),
                         PairSpec("test_00_cip_small", "test", "cip_small", (0, 1, 0)), config)
    sitk.WriteImage(pair.prior, str(tmp_path / "prior.nrrd"))
    sitk.WriteImage(pair.current, str(tmp_path / "current.nrrd"))
    truth = pair.truth
    table = _csv(tmp_path / "cases.csv", ["case_id,path,prior,prior_date,current_date",
                                          f"fu,current.nrrd,prior.nrrd,{truth['prior_date']},{truth['current_date']}",
                                          "gone,current.nrrd,missing.nrrd,,"])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "batch", str(table), "-o", str(out), "--workers", "1",
                             "--threads-per-worker", "1", "--device", "cpu"],
                            capture_output=True, text=True, timeout=1500, check=False)
    assert (out / "fu" / "follow_up.json").is_file(), result.stderr
    document = json.loads((out / "fu" / "follow_up.json").read_text())
    assert document["interval_days"] == truth["interval_days"]
    with (out / "cohort.csv").open(newline="") as stream:
        cohort = {row["case_id"]: row for row in csv.DictReader(stream)}
    statuses = [pair["status"] for pair in document["nodules"]]
    assert cohort["fu"]["status"] == "done"
    assert int(cohort["fu"]["follow_up_matched"]) == statuses.count("matched")
    assert int(cohort["fu"]["follow_up_resolved"]) == statuses.count("resolved")
    assert cohort["fu"]["prior"].endswith("prior.nrrd")
    assert cohort["gone"]["status"] == "failed" and int(cohort["gone"]["exit_code"]) == InputNotFoundError.exit_code
    with (out / "cohort_follow_up.csv").open(newline="") as stream:
        assert len(list(csv.DictReader(stream))) == len(document["nodules"])
    assert result.returncode != 0  # one case failed
