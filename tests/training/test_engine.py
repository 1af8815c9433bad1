"""The training engine: named steps over a composed strategy, typed state, one resume check, seeded samplers."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.utils.data import DataLoader, TensorDataset

from lungai.data.detection_dataset import RoiSet
from lungai.errors import WeightsError
from lungai.io.run_log import RunLog
from lungai.models.checkpoint import config_from_dict, load_model, save_model
from lungai.models.registry import build_model, get_spec
from lungai.training import detection_trainer, emphysema, trainer
from lungai.training.detection_trainer import DetectionTrainConfig, train_detection
from lungai.training.emphysema import EmphysemaTrainConfig, train_emphysema
from lungai.training.engine import (
    RunSpec,
    TrainEvent,
    TrainState,
    refuse_other_settings,
    run_metrics,
    run_training,
)
from lungai.training.recipes import make_config
from lungai.training.samplers import HalfPositiveBatches, balanced, epoch_loader, shuffled


class _Interrupt(Exception):
    pass


def _tiny_classifier() -> nn.Module:
    """A registered 2D CNN of 1,000 parameters with dropout (so the epoch's seed matters)."""
    spec = get_spec("nodule_cnn2d")
    return build_model("nodule_cnn2d", config_from_dict(spec.architecture.config_class,
                                                        {"filters": (2, 2, 2), "hidden": 4, "feature_grid": (1, 1)}))


@dataclass
class _ScriptedStrategy:
    """A strategy whose validation metric follows a script: a CNN on fixed images, cross-entropy, Adam."""

    out: Path
    scores: list[float]
    epochs: int = 5
    model: nn.Module = field(default_factory=_tiny_classifier)
    metric: str = "val_score"
    saved: list[int] = field(default_factory=list)
    epoch: int = -1

    def __post_init__(self) -> None:
        self.optimizer: torch.optim.Optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.scheduler: LRScheduler | None = CosineAnnealingLR(self.optimizer, T_max=self.epochs)
        images = torch.arange(10 * 24 * 24, dtype=torch.float32).reshape(10, 1, 24, 24).sin()
        self.data = TensorDataset(images, torch.arange(10) % 2)

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader[Any]:
        self.epoch = epoch
        return epoch_loader(self.data, 4, shuffled(len(self.data), generator))

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def validate(self) -> dict[str, float]:
        return {self.metric: self.scores[self.epoch], "val_other": 1.0}

    def save_best(self, record: dict[str, Any]) -> None:
        save_model(self.model, self.out)
        self.saved.append(record["epoch"])

    def metrics(self, state: TrainState) -> dict[str, Any]:
        return run_metrics(state, {"task": "scripted", "metric": self.metric}, extra_key=1)


def _spec(out: Path, epochs: int = 5, patience: int = 2, **settings: Any) -> RunSpec:
    return RunSpec(out, epochs, patience, seed=0, num_threads=1, settings={"lr": 0.01, **settings},
                   may_change=frozenset({"epochs"}))


def _scripted(out: Path, scores: list[float], built: list[_ScriptedStrategy] | None = None, epochs: int = 5):
    def build(resumed: bool) -> _ScriptedStrategy:
        strategy = _ScriptedStrategy(out, scores, epochs)
        if built is not None:
            built.append(strategy)
        return strategy
    return build


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_the_engine_keeps_the_best_epoch_and_stops_when_patience_runs_out(tmp_path: Path) -> None:
    built: list[_ScriptedStrategy] = []
    events: list[TrainEvent] = []
    state = run_training(_spec(tmp_path), _scripted(tmp_path, [0.5, 0.7, 0.6, 0.65, 0.9], built), events.append)
    assert (state.epoch, state.best_epoch, state.best_metric, state.bad_epochs) == (4, 1, 0.7, 2)
    assert state.stopped_early and built[0].saved == [0, 1]
    assert [e.kind for e in events] == ["batch", "batch", "epoch"] * 4  # 10 samples, batches of 4: the last dropped
    assert events[3].val_metric == 0.5 and events[-1].val_metric == 0.65
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics)[:6] == ["task", "metric", "best_epoch", "val_score", "val_other", "extra_key"]
    assert metrics["best_epoch"] == 1 and metrics["val_score"] == 0.7 and metrics["epochs_run"] == 4
    assert metrics["config"] == {"lr": 0.01} and len(metrics["history"]) == 4
    saved = json.loads((tmp_path / "last" / "state.json").read_text())["trainer"]
    assert TrainState.from_json(saved) == state
    log = (tmp_path / "train.log").read_text()
    assert "epoch 4/5" in log and "early stop" in log
    assert load_model(tmp_path).config.hidden == 4


def test_an_undefined_metric_in_every_epoch_keeps_the_last_model(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    built: list[_ScriptedStrategy] = []
    with caplog.at_level(logging.WARNING, logger="lungai"):
        state = run_training(_spec(tmp_path, epochs=2, patience=0), _scripted(tmp_path, [float("nan")] * 2, built))
    assert state.best_epoch == -1 and not state.stopped_early and built[0].saved == [1]
    assert any("undefined in every epoch" in r.getMessage() for r in caplog.records)


def test_a_rerun_is_bit_identical_and_a_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    scores = [0.1, 0.2, 0.3]

    def stop_after_first_epoch(event: TrainEvent) -> None:
        if event.kind == "epoch" and event.epoch == 0:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_training(_spec(tmp_path / "resumed", epochs=3), _scripted(tmp_path / "resumed", scores, epochs=3),
                     stop_after_first_epoch)
    resumed = run_training(_spec(tmp_path / "resumed", epochs=3), _scripted(tmp_path / "resumed", scores, epochs=3))
    assert "resumed" in (tmp_path / "resumed" / "train.log").read_text()
    for name in ("a", "b"):
        straight = run_training(_spec(tmp_path / name, epochs=3), _scripted(tmp_path / name, scores, epochs=3))
    assert resumed.epoch == straight.epoch == 3
    for filename in ("model.safetensors", "optimizer.safetensors"):
        files = [load_file(str(tmp_path / name / "last" / filename)) for name in ("resumed", "a", "b")]
        assert _same(files[0], files[1]) and _same(files[1], files[2]), filename
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]


def test_a_longer_budget_stretches_the_schedule_and_other_settings_are_refused(tmp_path: Path) -> None:
    built: list[_ScriptedStrategy] = []
    run_training(_spec(tmp_path, epochs=1), _scripted(tmp_path, [0.1, 0.2], epochs=1))
    with pytest.raises(WeightsError, match=r"other settings \(lr 0.01 -> 0.1\).*--restart"):
        run_training(_spec(tmp_path, epochs=2, lr=0.1), _scripted(tmp_path, [0.1, 0.2], built, epochs=2))
    assert not built  # refused before anything was built
    state = run_training(_spec(tmp_path, epochs=2), _scripted(tmp_path, [0.1, 0.2], built, epochs=2))
    assert state.epoch == 2 and isinstance(built[0].scheduler, CosineAnnealingLR) and built[0].scheduler.T_max == 2
    assert run_training(_spec(tmp_path, epochs=1, lr=0.1), _scripted(tmp_path, [0.3], epochs=1),
                        resume=False).history[0]["val_score"] == 0.3


def test_train_state_round_trips_through_json_and_reads_the_older_states() -> None:
    state = TrainState(epoch=3, best_metric=0.8, best_epoch=1, bad_epochs=1, stopped_early=True, train_seconds=2.5,
                       history=[{"epoch": e, "val_auc": v} for e, v in enumerate((0.5, 0.8, 0.7))],
                       best_record={"epoch": 1, "val_auc": 0.8})
    assert TrainState.from_json(json.loads(json.dumps(state.to_json()))) == state
    before_first_best = {"epoch": 1, "best_metric": -1.0, "best_epoch": -1, "bad_epochs": 1,
                         "history": [{"epoch": 0, "val_auc": float("nan")}], "stopped_early": False,
                         "train_seconds": 1.0}  # as the malignancy / nodule-seg / emphysema trainers wrote it
    assert TrainState.from_json(before_first_best).best_record == {}
    detection = {"epoch": 2, "best_auc": 0.9, "stale": 1,
                 "history": [{"auc": 0.9, "epoch": 1, "train_loss": 0.5, "seconds": 2.0},
                             {"auc": 0.8, "epoch": 2, "train_loss": 0.4, "seconds": 3.0}]}
    converted = TrainState.from_json(detection)
    assert (converted.epoch, converted.best_epoch, converted.best_metric, converted.bad_epochs) == (2, 0, 0.9, 1)
    assert [r["epoch"] for r in converted.history] == [0, 1] and converted.best_record["auc"] == 0.9
    assert converted.train_seconds == 5.0


def _fake_run(out: Path, settings: dict[str, Any]) -> None:
    """A run folder as an earlier run leaves it: ``last/state.json`` and ``metrics.json`` with its settings."""
    (out / "last").mkdir(parents=True)
    (out / "last" / "state.json").write_text(json.dumps({"trainer": TrainState().to_json()}))
    (out / "metrics.json").write_text(json.dumps({"config": settings}))


def _voi_config(out: Path, **extra: Any):
    return make_config("malignancy", "nodule_cnn2d", out / "no_data", out, epochs=2, **extra)


def _emphysema_config(out: Path, **extra: Any) -> EmphysemaTrainConfig:
    return EmphysemaTrainConfig(model="mil_max", data=out / "labels.csv", out=out, size="cpu", **extra)


@pytest.mark.parametrize("entry", ["voi", "emphysema", "detection"])
def test_every_trainer_refuses_to_resume_a_run_with_other_settings(entry: str, tmp_path: Path) -> None:
    if entry == "voi":
        _fake_run(tmp_path, _voi_config(tmp_path, lr=0.5).to_json())
        call, fix = (lambda: trainer.train(_voi_config(tmp_path))), "--restart"
    elif entry == "emphysema":
        _fake_run(tmp_path, _emphysema_config(tmp_path, lr=0.5).to_json())
        call, fix = (lambda: train_emphysema(_emphysema_config(tmp_path))), "--restart"
    else:
        _fake_run(tmp_path, _detection_settings(DetectionTrainConfig(out=tmp_path, lr=0.5)))
        call, fix = (lambda: train_detection(DetectionTrainConfig(out=tmp_path), *_roi_sets())), "delete its last/"
    with pytest.raises(WeightsError, match=rf"other settings \(lr 0.5 -> 0.00\d\).*{fix}"):
        call()
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["lr"] == 0.5  # untouched


@pytest.mark.parametrize(("module", "config", "changes"), [
    (trainer, _voi_config, {"epochs": 9, "patience": 1, "num_threads": 4, "device": "auto", "data": "x", "out": "y"}),
    (emphysema, _emphysema_config, {"epochs": 9, "patience": 1, "num_threads": 4, "cache_dir": "c", "data": "x"}),
    (detection_trainer, lambda out: DetectionTrainConfig(out=out), {"epochs": 9, "patience": 1, "threads": 4}),
])
def test_every_trainer_may_resume_with_a_longer_budget_or_more_threads(module: Any, config: Any,
                                                                       changes: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    settings = _detection_settings(config(tmp_path)) if module is detection_trainer else config(tmp_path).to_json()
    _fake_run(tmp_path, {**settings, **changes})
    refuse_other_settings(RunSpec(tmp_path, 2, 1, 0, 1, settings, module.RESUME_MAY_CHANGE))
    _fake_run(tmp_path / "seed", {**settings, "seed": 7})
    with pytest.raises(WeightsError, match="seed 7 -> 0"):
        refuse_other_settings(RunSpec(tmp_path / "seed", 2, 1, 0, 1, settings, module.RESUME_MAY_CHANGE))


def _detection_settings(config: DetectionTrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()}))


def _rois(n: int, seed: int) -> RoiSet:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    rois = (rng.normal(size=(n, 10, 32, 32)) + labels[:, None, None, None]).astype(np.float16)
    masks = np.zeros((n, 8, 28, 28), np.uint8)
    masks[labels == 1, 3:5, 12:16, 12:16] = 1
    return RoiSet(rois, masks, labels, [f"c{i}@bg" if labels[i] else "negative@bg" for i in range(n)])


def _roi_sets() -> tuple[RoiSet, RoiSet]:
    return _rois(18, 0), _rois(15, 1)


def _detection(out: Path, epochs: int = 2) -> DetectionTrainConfig:
    return DetectionTrainConfig(out=out, epochs=epochs, steps_per_epoch=2, batch_size=4, max_val_negatives=6,
                                texture_weight=2.0)


def test_detection_training_writes_its_metrics_and_resumes_as_if_uninterrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = _roi_sets()
    metrics = train_detection(_detection(tmp_path / "straight"), train, val, frozenset({"c3"}))
    assert list(metrics) == ["task", "model", "best_epoch", "validation", "validation_data", "train_rois", "val_rois",
                             "config"]
    assert metrics["task"] == "detection-fp-reduction" and metrics["best_epoch"] in (1, 2)  # 1-based
    assert set(metrics["validation"]) == {"auc", "sensitivity_at_specificity_0.95", "sensitivity_at_specificity_0.99"}
    assert metrics["train_rois"] == {"positives": 6, "negatives": 12} and metrics["val_rois"]["negatives"] == 6
    assert metrics["config"]["texture_weight"] == 2.0 and (tmp_path / "straight" / "train.log").is_file()

    validate = detection_trainer.validate
    calls: list[int] = []

    def stop_in_second_validation(model: nn.Module, rois: RoiSet) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise _Interrupt
        return validate(model, rois)

    monkeypatch.setattr(detection_trainer, "validate", stop_in_second_validation)
    with pytest.raises(_Interrupt):
        train_detection(_detection(tmp_path / "resumed"), train, val, frozenset({"c3"}))
    monkeypatch.setattr(detection_trainer, "validate", validate)
    assert train_detection(_detection(tmp_path / "resumed"), train, val, frozenset({"c3"}))["validation"] == \
        metrics["validation"]
    a, b = (load_file(str(tmp_path / name / "last" / "model.safetensors")) for name in ("straight", "resumed"))
    assert _same(a, b)


def test_samplers_are_seeded_and_draw_what_they_promise() -> None:
    def order(seed: int) -> list[int]:
        return list(shuffled(10, torch.Generator().manual_seed(seed)))

    assert order(1) == order(1) != order(2) and sorted(order(1)) == list(range(10))
    labels = [1] + [0] * 99
    drawn = list(balanced(labels, torch.Generator().manual_seed(0)))
    assert len(drawn) == 100 and 30 < drawn.count(0) < 70  # the single positive is drawn about half the time
    batches = list(HalfPositiveBatches(np.array([0, 1]), np.array([5, 6, 7]), 4, 3, np.random.default_rng(0)))
    assert len(batches) == 3 and all(set(b[:2]) <= {0, 1} and set(b[2:]) <= {5, 6, 7} for b in batches)
    data = TensorDataset(torch.arange(3))
    assert [len(b[0]) for b in epoch_loader(data, 4, shuffled(3, torch.Generator()))] == [3]  # less than one batch
    assert [len(b[0]) for b in epoch_loader(TensorDataset(torch.arange(9)), 4, shuffled(9, torch.Generator()))] \
        == [4, 4]


def test_the_run_log_copies_lungai_records_and_restores_the_level(tmp_path: Path) -> None:
    logger = logging.getLogger("lungai")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with RunLog(tmp_path / "run.log"):
            logging.getLogger("lungai.somewhere").info("written")
        logging.getLogger("lungai.somewhere").warning("after")
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)
    text = (tmp_path / "run.log").read_text()
    assert "INFO lungai.somewhere: written" in text and "after" not in text
