"""The training engine: one seeded, resumable, early-stopped loop for every trained model.

A task brings a :class:`Strategy` (its model, optimiser and schedule, the epoch's batches, the
loss of a batch, the validation numbers and which one decides the best epoch, what to save);
:func:`run_training` owns the rest, in the named steps of nnU-Net's ``run_training``::

    on_train_start          refuse other settings, seed, build the strategy, load last/
    per epoch:
        train steps         DataLoader batches, loss, optimiser step; then the schedule
        validate            the strategy's numbers
        on_epoch_end        best model, early stopping, last/, metrics.json
        log                 train.log and the progress callback
    on_train_end            the last model when no epoch had a defined metric

Every epoch reseeds torch from ``(seed, epoch)`` (:func:`seed_epoch`) and the strategy draws its
batches from the generator it is handed, so a repeated run is bit-identical on the same machine
and thread count, and a run resumed from ``last/`` continues exactly as if it had never stopped.
The run folder holds the best model (``config.json`` + ``model.safetensors``), ``metrics.json``
(the strategy's payload and the run's settings under ``config``), ``train.log`` and ``last/``
(:mod:`lungai.training.checkpointing`; the counters are a :class:`TrainState`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from torch.utils.data import DataLoader

from lungai.errors import WeightsError
from lungai.io.run_log import RunLog
from lungai.training.checkpointing import has_training_state, load_training_state, save_training_state

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
LOG_FILE = "train.log"


@dataclass(frozen=True)
class TrainEvent:
    """Progress of a run, for progress bars.

    Attributes:
        kind: ``batch`` after each optimiser step, ``epoch`` after each validation.
        epoch: 0-based epoch.
        epochs: the epoch budget.
        step: batches done in this epoch.
        steps: batches per epoch.
        loss: running mean training loss of the epoch.
        val_metric: the latest validation metric (``nan`` before the first).
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    val_metric: float


@dataclass(frozen=True)
class TrainResult:
    """What a run produced.

    Attributes:
        out: the run folder.
        best_epoch: 0-based epoch of the saved model.
        best_metric: its validation metric.
        epochs_run: epochs trained in total (over all resumptions).
        stopped_early: early stopping ended the run.
    """

    out: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_early: bool


@dataclass
class TrainState:
    """The counters and history of a run, saved in ``last/state.json`` after every epoch.

    Attributes:
        epoch: epochs done (the next epoch's 0-based index).
        best_metric: the best validation metric so far (-1 before the first defined one).
        best_epoch: its 0-based epoch (-1: none yet).
        bad_epochs: epochs since the last improvement.
        history: one record per epoch: ``epoch``, ``train_loss``, the validation numbers, ``seconds``.
        stopped_early: early stopping ended the run.
        train_seconds: time spent in epochs, over all resumptions.
        best_record: the best epoch's record (empty before the first).
    """

    epoch: int = 0
    best_metric: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0
    best_record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainState:
        """A state written by :meth:`to_json`, or by the detection trainer before this engine."""
        if "best_auc" in values:
            values = _from_detection_state(values)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def result(self, out: Path) -> TrainResult:
        """The run's result, for a run folder ``out``."""
        return TrainResult(out, self.best_epoch, self.best_metric, self.epoch, self.stopped_early)


def _from_detection_state(values: dict[str, Any]) -> dict[str, Any]:
    """The detection trainer's old state (``best_auc``, ``stale``, 1-based epochs) as :class:`TrainState` values."""
    history = [{**record, "epoch": int(record["epoch"]) - 1} for record in values.get("history", [])]
    best = next((record for record in history if record.get("auc") == values["best_auc"]), {})
    return {"epoch": values["epoch"], "best_metric": values["best_auc"], "best_epoch": best.get("epoch", -1),
            "bad_epochs": values.get("stale", 0), "history": history,
            "train_seconds": float(sum(record.get("seconds", 0.0) for record in history)), "best_record": best}


@dataclass(frozen=True)
class RunSpec:
    """Where a run trains, for how long, and the settings it is recorded and resumed with.

    Attributes:
        out: the run folder.
        epochs: the epoch budget (early stopping may end sooner).
        patience: stop after this many epochs without a better validation metric; 0 never stops.
        seed: seeds the initialisation and every epoch (:func:`seed_epoch`).
        num_threads: CPU threads torch may use.
        settings: the run's configuration as JSON-ready values; ``metrics.json`` records it under
            ``config`` and a resumed run must match it (:func:`refuse_other_settings`).
        may_change: the settings a resumed run may change.
        fresh_start: how a user trains from scratch instead (named in the refusal).
    """

    out: Path
    epochs: int
    patience: int
    seed: int
    num_threads: int
    settings: dict[str, Any]
    may_change: frozenset[str]
    fresh_start: str = "--restart to train from scratch"


class Strategy(Protocol):
    """What one task brings to the engine.

    Attributes:
        model: the network being trained.
        optimizer: its optimiser.
        scheduler: a learning-rate schedule stepped after every epoch, or ``None``.
        metric: the key of :meth:`validate`'s numbers that decides the best epoch (higher is better).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    metric: str

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader[Any]:
        """The training batches of ``epoch``, drawn from ``generator`` (seeded for the epoch)."""
        ...

    def loss(self, batch: Any) -> torch.Tensor:
        """The training loss of one batch (the model is in training mode)."""
        ...

    def validate(self) -> dict[str, float]:
        """The validation numbers of the current model, :attr:`metric` among them."""
        ...

    def save_best(self, record: dict[str, Any]) -> None:
        """Save the current model (and its inference settings) as the run's best; ``record`` is its epoch's."""
        ...

    def metrics(self, state: TrainState) -> dict[str, Any]:
        """``metrics.json``'s content (the engine adds the settings under ``config``)."""
        ...


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global generator (initialisation, dropout) for ``epoch`` (-1: initialisation).

    Returns:
        A generator seeded alike, for the epoch's sampler.
    """
    value = seed * 100_003 + epoch
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def run_training(spec: RunSpec, build: Callable[[bool], Strategy], on_event: Callable[[TrainEvent], None] | None = None,
                 resume: bool = True) -> TrainState:
    """Train a strategy in ``spec.out``, resuming from ``spec.out/last`` when it exists and ``resume`` is set.

    Args:
        spec: the run's folder, budget and settings.
        build: makes the strategy; called with whether the run resumes (after the
            initialisation seed, so the model it builds is seeded).
        on_event: called after every step and every epoch (progress bars).
        resume: continue a previous run in ``spec.out``; ``False`` starts over.

    Returns:
        The final state.

    Raises:
        WeightsError: the run folder holds a run with other settings, or its state cannot be loaded.
    """
    spec.out.mkdir(parents=True, exist_ok=True)
    with RunLog(spec.out / LOG_FILE):
        strategy, state = _on_train_start(spec, build, resume and has_training_state(spec.out))
        while state.epoch < spec.epochs and not state.stopped_early:
            _run_epoch(spec, strategy, state, on_event or _ignore)
        _on_train_end(strategy, state)
    return state


def _ignore(_event: TrainEvent) -> None:
    """No progress display."""


def _on_train_start(spec: RunSpec, build: Callable[[bool], Strategy], resumed: bool) -> tuple[Strategy, TrainState]:
    if resumed:
        refuse_other_settings(spec)
    torch.set_num_threads(spec.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed_epoch(spec.seed, -1)
    strategy = build(resumed)
    if not resumed:
        return strategy, TrainState()
    saved = load_training_state(spec.out, strategy.model, strategy.optimizer, strategy.scheduler)
    state = TrainState.from_json(saved)
    logger.info("resumed %s after epoch %d", spec.out, state.epoch)
    _stretch_schedule(strategy.scheduler, spec.epochs)
    state.stopped_early = state.stopped_early or _out_of_patience(spec, state)
    return strategy, state


def _stretch_schedule(scheduler: LRScheduler | None, epochs: int) -> None:
    """Fit a resumed run's cosine schedule to a changed epoch budget."""
    if isinstance(scheduler, CosineAnnealingLR) and scheduler.T_max != epochs:
        logger.warning("epoch budget changed from %d to %d: the cosine schedule now ends at epoch %d",
                       scheduler.T_max, epochs, epochs)
        scheduler.T_max = epochs


def _out_of_patience(spec: RunSpec, state: TrainState) -> bool:
    return bool(spec.patience and state.bad_epochs >= spec.patience)


def _run_epoch(spec: RunSpec, strategy: Strategy, state: TrainState, on_event: Callable[[TrainEvent], None]) -> None:
    started = time.perf_counter()
    epoch = state.epoch
    train_loss, steps = _train_steps(spec, strategy, state, on_event)
    if strategy.scheduler is not None:
        strategy.scheduler.step()
    val = strategy.validate()
    record = _on_epoch_end(spec, strategy, state, train_loss, val, time.perf_counter() - started)
    _log_epoch(spec, strategy.metric, state, record)
    on_event(TrainEvent("epoch", epoch, spec.epochs, steps, steps, train_loss, float(val[strategy.metric])))


def _train_steps(spec: RunSpec, strategy: Strategy, state: TrainState,
                 on_event: Callable[[TrainEvent], None]) -> tuple[float, int]:
    """One epoch of optimiser steps.

    Returns:
        The mean training loss and the number of steps.
    """
    loader = strategy.batches(state.epoch, seed_epoch(spec.seed, state.epoch))
    last_val = state.history[-1][strategy.metric] if state.history else float("nan")
    strategy.model.train()
    losses: list[float] = []
    for batch in loader:
        strategy.optimizer.zero_grad(set_to_none=True)
        loss = strategy.loss(batch)
        loss.backward()
        strategy.optimizer.step()
        losses.append(float(loss.item()))
        on_event(TrainEvent("batch", state.epoch, spec.epochs, len(losses), len(loader), float(np.mean(losses)),
                            last_val))
    return float(np.mean(losses)), len(losses)


def _on_epoch_end(spec: RunSpec, strategy: Strategy, state: TrainState, train_loss: float, val: dict[str, float],
                  seconds: float) -> dict[str, Any]:
    """Record the epoch, keep the best model, count towards early stopping, save ``last/`` and ``metrics.json``.

    Returns:
        The epoch's record.
    """
    state.train_seconds += seconds
    record = {"epoch": state.epoch, "train_loss": train_loss, **val, "seconds": round(seconds, 2)}
    state.history.append(record)
    value = val[strategy.metric]
    if np.isfinite(value) and value > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_epochs, state.best_record = float(value), state.epoch, 0, record
        strategy.save_best(record)
    else:
        state.bad_epochs += 1
    state.epoch += 1
    state.stopped_early = _out_of_patience(spec, state)
    save_training_state(spec.out, strategy.model, strategy.optimizer, strategy.scheduler, state.to_json())
    _write_metrics(spec, strategy.metrics(state))
    return record


def _log_epoch(spec: RunSpec, metric: str, state: TrainState, record: dict[str, Any]) -> None:
    logger.info("epoch %d/%d loss %.4f %s %.4f (best %.4f at epoch %d) %.1f s%s", record["epoch"] + 1, spec.epochs,
                record["train_loss"], metric, record[metric], state.best_metric, state.best_epoch + 1,
                record["seconds"], "; early stop" if state.stopped_early else "")


def _on_train_end(strategy: Strategy, state: TrainState) -> None:
    """Keep the last model when the validation metric was undefined in every epoch (one class)."""
    if state.best_epoch < 0 and state.history:
        strategy.save_best(state.history[-1])
        logger.warning("the validation %s was undefined in every epoch; saved the last epoch's model",
                       strategy.metric)


def run_metrics(state: TrainState, head: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The usual ``metrics.json`` content: the best epoch's validation numbers, the history, the time.

    Args:
        state: the run's state.
        head: the first keys (task, model, metric name).
        **extra: keys placed after the best epoch's validation numbers.
    """
    best = {key: value for key, value in state.best_record.items() if key.startswith("val_")}
    return {**head, "best_epoch": state.best_epoch, **best, **extra, "epochs_run": state.epoch,
            "stopped_early": state.stopped_early, "train_seconds": round(state.train_seconds, 1),
            "history": state.history}


def _write_metrics(spec: RunSpec, payload: dict[str, Any]) -> None:
    """Write ``metrics.json`` atomically, the run's settings last."""
    tmp = spec.out / f".{METRICS_FILE}.tmp"
    tmp.write_text(json.dumps({**payload, "config": spec.settings}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(spec.out / METRICS_FILE)


def refuse_other_settings(spec: RunSpec) -> None:
    """Refuse to resume a run folder whose recorded settings (``metrics.json`` ``config``) differ
    from ``spec.settings`` in anything but ``spec.may_change``: the result would be neither run.

    Raises:
        WeightsError: naming each setting that differs.
    """
    recorded = recorded_settings(spec.out)
    if recorded is None:
        return  # nothing recorded to compare; the saved state is still checked when it is loaded
    current = json.loads(json.dumps(spec.settings))  # tuples as lists, as they were recorded
    changed = sorted(key for key, value in current.items()
                     if key not in spec.may_change and key in recorded and recorded[key] != value)
    if changed:
        details = ", ".join(f"{key} {recorded[key]!r} -> {current[key]!r}" for key in changed)
        raise WeightsError(f"{spec.out} holds a run trained with other settings ({details}), so it "
                           "cannot be resumed with these", f"pass another --out, or {spec.fresh_start}")


def recorded_settings(out: Path) -> dict[str, Any] | None:
    """The settings a run folder's ``metrics.json`` records, or ``None`` when it records none."""
    try:
        recorded = json.loads((out / METRICS_FILE).read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None
