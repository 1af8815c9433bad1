"""The task table: the names derived from it, its stages, and the settings that name operating points."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lungai.pipeline import availability
from lungai.pipeline.config import (
    ALL_TASKS,
    MODELS_NOT_RUN,
    OPERATING_POINT_NAMES,
    REMOVED_TASKS,
    RUN_ROLES,
    SCANNER_MODEL,
    TASKS,
    TASKS_BY_NAME,
    RunConfig,
    describe_call,
    parse_tasks,
    required_models,
    with_needed,
)
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.weights.manifest import read_manifest


def test_the_names_are_derived_from_the_table() -> None:
    assert ALL_TASKS == ("lungs", "nodules", "malignancy", "emphysema")
    assert set(REMOVED_TASKS) == {"tumour"} and all(TASKS_BY_NAME[name].removed is None for name in ALL_TASKS)
    assert required_models(("malignancy",)) == [("nodules", "convlstm_nodule"), ("nodules", "resunet3d"),
                                                ("malignancy", "measured_nodule")]
    assert required_models(("lungs", "emphysema")) == []
    assert RUN_ROLES["resunet3d"] == "nodules: segments each detected nodule"
    assert RUN_ROLES["convlstm_scanner"].startswith("emphysema: ")


def test_every_shipped_network_has_a_role() -> None:
    assert set(read_manifest().models) <= set(RUN_ROLES)
    assert not set(MODELS_NOT_RUN) & {use.name for task in TASKS for use in (*task.models, *task.optional_models)}


def test_a_task_runs_after_the_tasks_it_needs() -> None:
    order = [task.name for task in TASKS]
    for task in TASKS:
        assert all(order.index(needed) < order.index(task.name) for needed in task.needs), task.name
    assert with_needed(["malignancy"]) == ("nodules", "malignancy")
    assert with_needed(["emphysema", "lungs"]) == ("lungs", "emphysema")


def test_every_stage_of_the_table_has_its_function() -> None:
    from lungai.pipeline.runner import CONTEXT_STAGES, STAGES, plan_stages

    stages = {task.stage for task in TASKS if task.removed is None}
    assert None not in stages and stages <= set(STAGES) | set(CONTEXT_STAGES)
    assert set(STAGES) <= stages
    assert plan_stages(("malignancy", "nodules")) == ("read", "lungs", "nodules", "malignancy")
    assert plan_stages(("emphysema",)) == ("read", "lungs", "emphysema")


def test_the_scanner_is_the_inference_layer_s() -> None:
    from lungai.inference.emphysema import SCANNER_MODEL as INFERENCE_SCANNER

    assert SCANNER_MODEL == INFERENCE_SCANNER
    assert [use.name for use in TASKS_BY_NAME["emphysema"].optional_models] == [SCANNER_MODEL]


def test_parse_tasks() -> None:
    assert parse_tasks("malignancy, lungs") == ("lungs", "nodules", "malignancy")
    assert parse_tasks("all") is None and parse_tasks("") is None and parse_tasks(None) is None
    with pytest.raises(ValueError, match="unknown task\\(s\\) lobes; choose from lungs, nodules"):
        parse_tasks("lungs,lobes")
    with pytest.raises(ValueError, match="tumour task was removed"):
        parse_tasks(["tumour"])


def test_an_experimental_task_runs_only_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = read_manifest()
    table = {**TASKS_BY_NAME, "emphysema": dataclasses.replace(TASKS_BY_NAME["emphysema"], experimental=True)}
    monkeypatch.setattr(availability, "TASKS_BY_NAME", table)
    assert "emphysema" in availability.tasks_with_weights(manifest)
    assert "emphysema" not in availability.default_tasks(manifest)


def test_the_operating_point_is_named_as_such() -> None:
    assert set(OPERATING_POINT_NAMES) == set(OPERATING_POINTS)
    config = RunConfig(input=Path("a.nrrd"), output=Path("out"), operating_point="high")
    assert describe_call(config) == ("python API: run_pipeline(RunConfig(input='a.nrrd', output='out', "
                                     "operating_point='high'))")
    with pytest.warns(DeprecationWarning, match="operating_point"):
        former = RunConfig(input=Path("a.nrrd"), output=Path("out"), sensitivity="specific")
    assert former.operating_point == "specific" and describe_call(former).endswith("operating_point='specific'))")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.operating_point = "balanced"  # type: ignore[misc]  # frozen: the check is that assignment fails
