"""The parser of ``--progress jsonl`` lines: the documented examples, real events, bad lines."""

from __future__ import annotations

import json

import pytest
from shared_data import REPO_ROOT

from lungai.pipeline.progress import ProgressEvent
from lungai.slicer.progress import ProgressUpdate, parse_progress_line


def test_every_run_example_of_the_format_document_parses() -> None:
    document = (REPO_ROOT / "docs" / "progress-jsonl.md").read_text()
    run_part = document.split("## `lungai batch --progress jsonl`")[0]  # the module runs `lungai run` only
    lines = [line for line in run_part.splitlines() if line.startswith('{"v":1')]
    assert len(lines) >= 4
    updates = [parse_progress_line(line) for line in lines]
    assert all(update is not None for update in updates)
    assert [update.event for update in updates] == ["start", "stage", "stage", "done"]
    assert updates[-1].output == "out"


def test_events_written_by_the_pipeline_round_trip() -> None:
    event = ProgressEvent(event="stage", stage="lungs", status="finished", index=2, total=4, fraction=0.5,
                          elapsed_s=3.2)
    update = parse_progress_line(event.to_json() + "\n")
    assert update == ProgressUpdate(event="stage", fraction=0.5, stage="lungs", status="finished", index=2,
                                    total=4)
    assert update.label == "Lungs done (2/4)"


def test_error_event_carries_message_and_exit_code() -> None:
    line = ProgressEvent(event="error", message="input x.nrrd does not exist; check the path",
                         data={"exit_code": 3}).to_json()
    update = parse_progress_line(line)
    assert update is not None
    assert (update.event, update.message, update.exit_code, update.label) == (
        "error", "input x.nrrd does not exist; check the path", 3, "Failed")


@pytest.mark.parametrize(("stage", "status", "label"), [
    ("read", "started", "Reading the scan (1/4)"),
    ("emphysema", "started", "Emphysema (3/4)"),
    ("write", "finished", "Writing results done (4/4)"),
    ("future_stage", "started", "Future_stage (3/4)"),
])
def test_stage_labels(stage: str, status: str, label: str) -> None:
    index = 1 if stage == "read" else 4 if stage == "write" else 3
    update = parse_progress_line(ProgressEvent(event="stage", stage=stage, status=status, index=index,
                                               total=4).to_json())
    assert update is not None and update.label == label


@pytest.mark.parametrize("line", [
    "",
    "   ",
    "Some library printed this",
    "{not json",
    "[1, 2, 3]",
    json.dumps({"v": 2, "event": "stage", "fraction": 0.5}),
    json.dumps({"event": "stage", "fraction": 0.5}),
    json.dumps({"v": 1, "event": "progress", "fraction": 0.5}),
    json.dumps({"v": 1, "event": "stage", "fraction": "half"}),
    json.dumps({"v": 1, "event": "error", "data": {"exit_code": "three"}}),
    json.dumps({"v": 1, "event": "done", "data": ["out"]}),
])
def test_lines_that_are_not_progress_events_are_skipped(line: str) -> None:
    assert parse_progress_line(line) is None


def test_fraction_is_clamped() -> None:
    update = parse_progress_line(json.dumps({"v": 1, "event": "stage", "fraction": 1.7}))
    assert update is not None and update.fraction == 1.0
