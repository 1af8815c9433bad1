"""Weak-label emphysema training: the ConvLSTM scanner and its MIL and 3D CNN baselines.

``lungai train emphysema --model NAME --data labels.csv`` trains one of :data:`EMPHYSEMA_MODELS`
from a weak-label CSV (:mod:`lungai.data.weak_labels`): the paper's preprocessing
(:mod:`lungai.data.emphysema_dataset`), the seeded patient-level split of that module, balanced
sampling (each epoch draws as many volumes as the train part holds, both classes equally
likely: :func:`lungai.training.samplers.balanced`), BCE on the volume logit, Adam. The training
engine (:mod:`lungai.training.engine`) reseeds every epoch from ``(seed, epoch)``, keeps the
resumable state in ``last/``, saves the best epoch by validation ROC AUC as ``config.json`` +
``model.safetensors`` + ``metrics.json`` (with the validation Youden threshold and the split's
fingerprint), and records every epoch in ``train.log``.

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
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

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
from lungai.training.engine import RunSpec, TrainEvent, TrainResult, TrainState, run_metrics, run_training
from lungai.training.samplers import balanced, epoch_loader

logger = logging.getLogger(__name__)

EMPHYSEMA_MODELS = ("convlstm_scanner", "mil_max", "mil_mean", "mil_product", "cnn3d")
SIZES = ("paper", "cpu")
#: Settings a resumed run may change: the epoch budget, the patience, where it runs, the paths
#: of the CSV and the cache (the split's fingerprint is recorded with the run).
RESUME_MAY_CHANGE = frozenset({"epochs", "patience", "device", "num_threads", "data", "out", "cache_dir"})
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
        WeightsError: the run folder holds a run with other settings, or its state cannot be loaded.
    """
    spec = RunSpec(config.out, config.epochs, config.patience, config.seed, config.num_threads, config.to_json(),
                   RESUME_MAY_CHANGE)
    state = run_training(spec, lambda _resumed: _EmphysemaStrategy.build(config), on_event, resume)
    return state.result(config.out)


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


@dataclass
class _EmphysemaStrategy:
    """Balanced batches of prepared volumes, BCE on the volume logit, validation ROC AUC."""

    config: EmphysemaTrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_set: EmphysemaVolumeDataset
    val_set: EmphysemaVolumeDataset
    shape: tuple[int, int, int]
    fingerprint: str
    device: str
    scheduler: LRScheduler | None = None
    metric: str = "val_auc"
    loss_fn: nn.Module = field(default_factory=nn.BCEWithLogitsLoss)

    @classmethod
    def build(cls, config: EmphysemaTrainConfig) -> _EmphysemaStrategy:
        """The model of ``config``, the volumes prepared for its input shape, and Adam."""
        device = resolve_device(config.device)
        model = build_emphysema_model(config).to(device)
        shape = input_shape(model.config)
        train_set, val_set, fingerprint = _datasets(config, shape)
        logger.info("emphysema %s: %d train / %d val volumes (%d / %d positive) on %s", config.model, len(train_set),
                    len(val_set), sum(train_set.labels), sum(val_set.labels), device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return cls(config, model, optimizer, train_set, val_set, shape, fingerprint, device)

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader[Any]:
        """The epoch's class-balanced draw of training volumes, augmented for the epoch."""
        self.train_set.set_epoch(epoch)
        return epoch_loader(self.train_set, self.config.batch_size, balanced(self.train_set.labels, generator))

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """BCE of the volume logits."""
        x, y = (tensor.to(self.device) for tensor in batch)
        return self.loss_fn(self.model(x), y)

    def validate(self) -> dict[str, float]:
        """ROC AUC and the Youden threshold on the validation volumes."""
        return _validate(self.model, self.val_set, self.device)

    def save_best(self, record: dict[str, Any]) -> None:
        """The model."""
        save_model(self.model, self.config.out)

    def metrics(self, state: TrainState) -> dict[str, Any]:
        """The best epoch's validation numbers, the input shape, the split's fingerprint and the history."""
        return run_metrics(state, {"task": "emphysema", "model": self.config.model, "metric": self.metric},
                           input_shape=list(self.shape), split_fingerprint=self.fingerprint)
