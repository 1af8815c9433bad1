"""Weak-label emphysema training: the ConvLSTM scanner and its MIL and 3D CNN baselines.

``lungai train emphysema --model NAME --data labels.csv`` trains one of :data:`EMPHYSEMA_MODELS`
from a weak-label CSV (:mod:`lungai.data.weak_labels`): the paper's preprocessing
(:mod:`lungai.data.emphysema_dataset`), the seeded patient-level split of that module, balanced
sampling (each epoch draws as many volumes as the train part holds, both classes equally
likely), BCE on the volume logit, Adam. Like :mod:`lungai.training.trainer`, every epoch is
reseeded from ``(seed, epoch)``, ``last/`` holds the resumable state, the best epoch by
validation ROC AUC is saved as ``config.json`` + ``model.safetensors`` + ``metrics.json``
(with the validation Youden threshold and the split's fingerprint), and ``train.log`` records
every epoch.

``size="cpu"`` narrows all five models alike (filters 8/8/16/16, FC widths scaled down) and
uses 32x32 slices (``feature_grid`` 2x2) so that they train on one CPU thread in minutes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lungai.data.emphysema_dataset import (
    EmphysemaVolumeDataset,
    default_cache_dir,
    load_parts,
    predict_logits,
    prepare_case,
    split_fingerprint,
)
from lungai.evaluation.metrics import roc_auc, youden_threshold
from lungai.inference.device import resolve_device
from lungai.models.checkpoint import config_from_dict, save_model
from lungai.models.registry import build_model, get_spec
from lungai.preprocessing.emphysema_input import input_shape
from lungai.training.checkpointing import has_training_state, load_training_state, save_training_state
from lungai.training.trainer import (
    LOG_FILE,
    TrainEvent,
    TrainResult,
    _RunLog,
    _seed_everything,
    write_run_metrics,
)

logger = logging.getLogger(__name__)

EMPHYSEMA_MODELS = ("convlstm_scanner", "mil_max", "mil_mean", "mil_product", "cnn3d")
SIZES = ("paper", "cpu")
_CPU_FILTERS = (8, 8, 16, 16)
CPU_MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "convlstm_scanner": {"filters": _CPU_FILTERS, "feature_grid": (2, 2)},
    "mil_max": {"filters": _CPU_FILTERS, "hidden": 32, "feature_grid": (2, 2)},
    "mil_mean": {"filters": _CPU_FILTERS, "hidden": 32, "feature_grid": (2, 2)},
    "mil_product": {"filters": _CPU_FILTERS, "hidden": 32, "feature_grid": (2, 2)},
    "cnn3d": {"filters": _CPU_FILTERS, "hidden": 16, "feature_grid": (2, 2, 2)},
}


@dataclass
class EmphysemaTrainConfig:
    """Everything an emphysema training run depends on; written into ``metrics.json``.

    Attributes:
        model: one of :data:`EMPHYSEMA_MODELS`.
        data: the weak-label CSV.
        out: the run folder.
        size: ``paper`` (the paper's widths, 128x128 slices) or ``cpu`` (see the module doc).
        epochs: the most epochs to train.
        batch_size: volumes per step.
        lr: Adam's learning rate.
        weight_decay: L2 penalty.
        patience: stop after this many epochs without a better validation AUC (0: never).
        seed: seed of initialisation, sampling and augmentation.
        split_seed: seed of the patient-level split (keep it equal across compared models).
        device: ``cpu``, ``cuda[:N]``, ``mps`` or ``auto``.
        num_threads: torch CPU threads.
        augment: flip / shift augmentation.
        max_cases: use only the first N cases of each part (smoke runs).
        cache_dir: where prepared volumes are cached (default ``<csv folder>/.lungai_cache``).
    """

    model: str
    data: Path
    out: Path
    size: str = "paper"
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 8
    seed: int = 0
    split_seed: int = 0
    device: str = "cpu"
    num_threads: int = 1
    augment: bool = True
    max_cases: int | None = None
    cache_dir: Path | None = None
    model_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in EMPHYSEMA_MODELS:
            raise ValueError(f"{self.model} is not an emphysema model; choose one of {', '.join(EMPHYSEMA_MODELS)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose one of {', '.join(SIZES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        self.data, self.out = Path(self.data), Path(self.out)
        if not self.model_config and self.size == "cpu":
            self.model_config = dict(CPU_MODEL_CONFIGS[self.model])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in vars(self).items()}


def build_emphysema_model(config: EmphysemaTrainConfig) -> nn.Module:
    """The model of a run: the registry name's default configuration with the run's overrides."""
    spec = get_spec(config.model)
    values = {**dataclasses.asdict(spec.default_config()), **config.model_config}
    return build_model(config.model, config_from_dict(spec.architecture.config_class, values))


def _validate(model: nn.Module, val: EmphysemaVolumeDataset, device: str) -> dict[str, float]:
    probabilities = 1.0 / (1.0 + np.exp(-predict_logits(model, val, device)))
    labels = np.array(val.labels)
    if labels.min() == labels.max():
        return {"val_auc": float("nan"), "val_threshold": 0.5}
    return {"val_auc": roc_auc(probabilities, labels), "val_threshold": youden_threshold(probabilities, labels)}


def train_emphysema(config: EmphysemaTrainConfig, on_event: Callable[[TrainEvent], None] | None = None,
                    resume: bool = True) -> TrainResult:
    """Train one emphysema model, resuming from ``config.out/last`` when it exists and ``resume`` is set.

    Returns:
        Where the best model is and how the run went.

    Raises:
        ValueError: bad configuration or a split part without cases.
        LungAIError: the CSV or a scan cannot be read.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    with _RunLog(config.out / LOG_FILE):
        return _train(config, on_event or (lambda _event: None), resume)


def _datasets(config: EmphysemaTrainConfig, shape: tuple[int, int, int]
              ) -> tuple[EmphysemaVolumeDataset, EmphysemaVolumeDataset, str]:
    """Train and val datasets, and the split's fingerprint."""
    parts = load_parts(config.data, config.split_seed, config.max_cases)
    cache = config.cache_dir or default_cache_dir(config.data)
    started = time.perf_counter()
    prepared = {part: [prepare_case(case, shape, cache) for case in parts[part]] for part in ("train", "val")}
    logger.info("prepared %d volumes at %s in %.0f s (split %s)", sum(map(len, prepared.values())), shape,
                time.perf_counter() - started, split_fingerprint(parts))
    train = EmphysemaVolumeDataset(prepared["train"], [c.label for c in parts["train"]], config.augment, config.seed)
    val = EmphysemaVolumeDataset(prepared["val"], [c.label for c in parts["val"]])
    return train, val, split_fingerprint(parts)


def _train(config: EmphysemaTrainConfig, on_event: Callable[[TrainEvent], None], resume: bool) -> TrainResult:
    device = resolve_device(config.device)
    torch.set_num_threads(config.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _seed_everything(config.seed, -1)
    model = build_emphysema_model(config).to(device)
    shape = input_shape(model.config)
    train_set, val_set, fingerprint = _datasets(config, shape)
    logger.info("emphysema %s: %d train / %d val volumes (%d / %d positive) on %s", config.model, len(train_set),
                len(val_set), sum(train_set.labels), sum(val_set.labels), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    state: dict[str, Any] = {"epoch": 0, "best_metric": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
                             "stopped_early": False, "train_seconds": 0.0}
    if resume and has_training_state(config.out):
        state = load_training_state(config.out, model, optimizer, None)
        logger.info("resumed %s after epoch %d", config.out, state["epoch"])
    steps = max(1, len(train_set) // config.batch_size)
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        started = time.perf_counter()
        generator = _seed_everything(config.seed, epoch)
        train_set.set_epoch(epoch)
        order = train_set.balanced_order(generator)
        model.train()
        losses: list[float] = []
        for step in range(steps):
            items = [train_set[i] for i in order[step * config.batch_size:(step + 1) * config.batch_size]]
            x = torch.stack([item[0] for item in items]).to(device)
            y = torch.stack([item[1] for item in items]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            on_event(TrainEvent("batch", epoch, config.epochs, step + 1, steps, float(np.mean(losses)),
                                state["history"][-1]["val_auc"] if state["history"] else float("nan")))
        val = _validate(model, val_set, device)
        seconds = time.perf_counter() - started
        state["train_seconds"] += seconds
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **val, "seconds": round(seconds, 2)}
        state["history"].append(record)
        if np.isfinite(val["val_auc"]) and val["val_auc"] > state["best_metric"]:
            state.update(best_metric=float(val["val_auc"]), best_epoch=epoch, bad_epochs=0, best_record=record)
            save_model(model, config.out)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["stopped_early"] = bool(config.patience and state["bad_epochs"] >= config.patience)
        save_training_state(config.out, model, optimizer, None, state)
        _write_metrics(config, state, shape, fingerprint)
        logger.info("epoch %d/%d loss %.4f val_auc %.4f (best %.4f at epoch %d) %.1f s%s", epoch + 1, config.epochs,
                    record["train_loss"], val["val_auc"], state["best_metric"], state["best_epoch"] + 1, seconds,
                    "; early stop" if state["stopped_early"] else "")
        on_event(TrainEvent("epoch", epoch, config.epochs, steps, steps, record["train_loss"], float(val["val_auc"])))
    if state["best_epoch"] < 0:
        save_model(model, config.out)  # validation AUC undefined (one class): keep the last model
        logger.warning("validation AUC was undefined in every epoch; saved the last epoch's model")
    return TrainResult(config.out, state["best_epoch"], state["best_metric"], state["epoch"], state["stopped_early"])


def _write_metrics(config: EmphysemaTrainConfig, state: dict[str, Any], shape: tuple[int, int, int],
                   fingerprint: str) -> None:
    """``metrics.json``: the saved epoch's validation numbers, input shape, split, history, config."""
    write_run_metrics(config.out, state, {"task": "emphysema", "model": config.model, "metric": "val_auc"},
                      config.to_json(), input_shape=list(shape), split_fingerprint=fingerprint)
