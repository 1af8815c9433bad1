"""Malignancy and nodule-segmentation training on VOI ROIs (a strategy of :mod:`lungai.training.engine`).

One run trains one model for one task on a ``lidc_vois``-like folder split by the committed
patient-level split: shuffled ROI batches (the incomplete last one dropped), the recipe's loss,
and, after every epoch, the validation metric that decides the best epoch: ROC AUC for
malignancy; for segmentation the mean Dice on the VOIs' native grids at the probability
threshold that maximises it on the validation split. The engine reseeds every epoch, resumes
from ``last/`` and writes ``config.json`` + ``model.safetensors`` + ``metrics.json`` +
``train.log``. The best model's ``config.json`` also records the validation-chosen threshold and
the ROI under ``inference`` (:func:`lungai.models.checkpoint.write_inference_settings`), so
evaluation and the pipeline apply it as validated. Segmentation losses ignore the ROI's padding
(:mod:`lungai.training.seg_losses`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from lungai.data.augment import AugmentConfig
from lungai.data.lidc_vois import VOICase, list_vois
from lungai.data.negative_rois import NegativeScan, negative_volumes
from lungai.data.roi_dataset import NoduleROIDataset
from lungai.data.splits import cases_for_split, load_split
from lungai.errors import WeightsError
from lungai.evaluation.metrics import roc_auc, youden_point
from lungai.evaluation.predictions import centre_crop_like, malignancy_probabilities, mask_probabilities
from lungai.evaluation.segmentation_eval import choose_threshold, mean_dice, to_native
from lungai.inference.device import resolve_device
from lungai.models.checkpoint import config_from_dict, load_model, save_model, write_inference_settings
from lungai.models.losses import ScheduledLoss, balanced_class_weights, build_loss
from lungai.models.registry import build_model, get_spec
from lungai.preprocessing.roi import roi_spec
from lungai.training.config import TrainConfig
from lungai.training.engine import (
    LOG_FILE,
    METRICS_FILE,
    RunSpec,
    TrainEvent,
    TrainResult,
    TrainState,
    run_metrics,
    run_training,
)
from lungai.training.samplers import epoch_loader, shuffled
from lungai.training.seg_losses import build_masked_loss

__all__ = ["LOG_FILE", "METRICS_FILE", "RESUME_MAY_CHANGE", "NativeTargets", "TrainEvent", "TrainResult",
           "metric_name", "train", "validate"]

logger = logging.getLogger(__name__)

#: Settings a resumed run may change: the epoch budget (the cosine schedule is stretched), the
#: patience, where it runs, the folders' paths, and init_weights (unused when resuming).
RESUME_MAY_CHANGE = frozenset({"epochs", "patience", "device", "num_threads", "data", "out", "init_weights"})


def metric_name(task: str) -> str:
    """The validation metric of a task."""
    return "val_auc" if task == "malignancy" else "val_dice"


def _seed_everything(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global generator (init, dropout) for ``epoch`` (-1: initialisation), return the shuffle
    generator."""
    value = seed * 100_003 + epoch
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def _split_cases(config: TrainConfig) -> dict[str, list[VOICase]]:
    cases = list_vois(config.data).cases
    split = load_split(config.split_file) if config.split_file else load_split()
    parts = {part: cases_for_split(cases, split, part) for part in ("train", "val")}
    if config.min_diameter_mm is not None:
        parts = {part: [c for c in items if c.diameter_mm >= config.min_diameter_mm] for part, items in parts.items()}
    if config.max_cases is not None:
        parts = {part: _first_with_both_labels(items, config) for part, items in parts.items()}
    for part, items in parts.items():
        if not items:
            raise ValueError(f"no {part} cases of the split in {config.data}"
                             + (f" with diameter_mm >= {config.min_diameter_mm}" if config.min_diameter_mm else ""))
    return parts


def _first_with_both_labels(cases: list[VOICase], config: TrainConfig) -> list[VOICase]:
    """The first ``max_cases`` cases, swapping in a malignant one if none is among them."""
    chosen = cases[: config.max_cases]
    if config.task == "malignancy" and not any(c.label(config.label_rule) for c in chosen):
        positive = next((c for c in cases if c.label(config.label_rule)), None)
        if positive is not None:
            chosen = chosen[:-1] + [positive]
    return chosen


def _make_datasets(config: TrainConfig, parts: dict[str, list[VOICase]]) -> tuple[NoduleROIDataset, NoduleROIDataset]:
    spec = roi_spec(config.model)
    two_d = len(get_spec(config.model).input_shape) == 3
    augment = AugmentConfig(shift_fraction=config.shift_fraction) if config.augment else None
    negatives = [volume for text in config.negative_scans
                 for volume in negative_volumes(NegativeScan.parse(text), spec, config.negatives_per_scan, config.seed)]
    train = NoduleROIDataset(parts["train"], spec, config.task, config.label_rule, augment, config.seed, two_d,
                             negatives)
    val = NoduleROIDataset(parts["val"], spec, config.task, config.label_rule, None, config.seed, two_d)
    return train, val


def _make_model(config: TrainConfig) -> nn.Module:
    spec = get_spec(config.model)
    model_config = (config_from_dict(spec.architecture.config_class, config.model_config)
                    if config.model_config else None)
    return build_model(config.model, model_config)


def _load_init_weights(model: nn.Module, folder: Path) -> None:
    """Copy a checkpoint's weights into a new run's model (fine-tuning).

    Raises:
        WeightsError: the checkpoint is unreadable or another architecture or width.
    """
    source = load_model(folder)
    if type(source) is not type(model):
        raise WeightsError(f"--init-weights {folder} holds a {type(source).__name__}, not a {type(model).__name__}",
                           "give a checkpoint of the model being trained")
    weights = source.state_dict()
    if {k: v.shape for k, v in model.state_dict().items()} != {k: v.shape for k, v in weights.items()}:
        raise WeightsError(f"--init-weights {folder} has other layer widths than this run's model",
                           "train with the same --size as the checkpoint")
    model.load_state_dict(weights)
    logger.info("initialised the model from %s", folder)


def _make_optimizer(config: TrainConfig, model: nn.Module) -> tuple[torch.optim.Optimizer, LRScheduler | None]:
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                                            weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam or sgd")
    if config.scheduler == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                                     eta_min=config.lr / 100)
    if config.scheduler == "none":
        return optimizer, None
    raise ValueError(f"unknown scheduler {config.scheduler!r}; use cosine or none")


def _make_loss(config: TrainConfig, train: NoduleROIDataset) -> nn.Module:
    if config.task == "malignancy":
        weights = balanced_class_weights(torch.tensor(train.labels), 2) if config.class_weights else None
        return build_loss(config.loss, class_weights=weights)
    return build_masked_loss(config.loss)


def _batch_loss(config: TrainConfig, loss_fn: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if config.task == "malignancy":
        return loss_fn(F.log_softmax(output, dim=1) if config.loss == "nll" else output, target)
    return loss_fn(output, centre_crop_like(target, output.shape))


@dataclass(frozen=True)
class NativeTargets:
    """The validation VOIs' reader masks on their native grids, with shape and spacing."""

    masks: list[np.ndarray]
    grids: list[tuple[tuple[int, int, int], tuple[float, float, float]]]

    @classmethod
    def of(cls, cases: list[VOICase]) -> NativeTargets:
        """Read the masks of ``cases``."""
        samples = [case.load() for case in cases]
        grids = [((int(s.mask.shape[0]), int(s.mask.shape[1]), int(s.mask.shape[2])), s.spacing_zyx) for s in samples]
        return cls([s.mask for s in samples], grids)


def validate(config: TrainConfig, model: nn.Module, val: NoduleROIDataset, device: str,
             natives: NativeTargets | None = None) -> dict[str, float]:
    """The validation metric and its threshold for the current model.

    Malignancy: ROC AUC and the Youden threshold. Segmentation: the predictions are mapped to
    the VOIs' native grids (as :mod:`lungai.evaluation.segmentation_eval` scores them) and the
    probability threshold with the best mean Dice is chosen; ``val_dice`` is that Dice,
    ``val_dice_at_0_5`` the Dice at 0.5.

    Args:
        natives: the validation reader masks (read from ``val.cases`` when ``None``).

    Returns:
        ``{metric_name: value, "val_threshold": ...}`` (and ``val_dice_at_0_5``).
    """
    if config.task == "malignancy":
        scores = malignancy_probabilities(model, val, device=device)
        labels = np.array(val.labels)
        if labels.min() == labels.max():
            return {"val_auc": float("nan"), "val_threshold": 0.5}
        return {"val_auc": roc_auc(scores, labels), "val_threshold": youden_point(scores, labels).threshold}
    natives = natives or NativeTargets.of(val.cases)
    probabilities = to_native(mask_probabilities(model, val, device=device), natives.grids, val.spec)
    threshold, best = choose_threshold(probabilities, natives.masks)
    return {"val_dice": best, "val_threshold": threshold,
            "val_dice_at_0_5": mean_dice(probabilities, natives.masks, 0.5)}


def train(config: TrainConfig, on_event: Callable[[TrainEvent], None] | None = None,
          resume: bool = True) -> TrainResult:
    """Train one model, resuming from ``config.out/last`` when it exists and ``resume`` is set.

    Args:
        config: the run configuration.
        on_event: called after every step and every epoch (progress bars).
        resume: continue a previous run in ``config.out``; ``False`` starts over.

    Returns:
        Where the best model is and how the run went.

    Raises:
        ValueError: bad configuration or an empty split.
        WeightsError: the run folder holds a run with other settings, or its saved state cannot be resumed.
    """
    spec = RunSpec(config.out, config.epochs, config.patience, config.seed, config.num_threads, config.to_json(),
                   RESUME_MAY_CHANGE)
    return run_training(spec, lambda resumed: _RoiStrategy.build(config, resumed), on_event, resume).result(config.out)


@dataclass
class _RoiStrategy:
    """Malignancy or nodule-seg on VOI ROIs: shuffled batches, the task's loss, ROC AUC or native-grid Dice."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    loss_fn: nn.Module
    train_set: NoduleROIDataset
    val_set: NoduleROIDataset
    natives: NativeTargets | None
    device: str
    metric: str

    @classmethod
    def build(cls, config: TrainConfig, resumed: bool) -> _RoiStrategy:
        """The datasets, model, optimiser and loss of ``config`` (``init_weights`` unless ``resumed``)."""
        device = resolve_device(config.device)
        train_set, val_set = _make_datasets(config, _split_cases(config))
        logger.info("%s %s: %d train / %d val cases%s on %s", config.task, config.model, len(train_set.cases),
                    len(val_set), f" and {train_set.n_negatives} negative ROIs" if train_set.n_negatives else "",
                    device)
        model = _make_model(config).to(device)
        optimizer, scheduler = _make_optimizer(config, model)
        if config.init_weights is not None and not resumed:
            _load_init_weights(model, config.init_weights)
        natives = NativeTargets.of(val_set.cases) if config.task == "nodule-seg" else None
        return cls(config, model, optimizer, scheduler, _make_loss(config, train_set).to(device), train_set, val_set,
                   natives, device, metric_name(config.task))

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader[Any]:
        """The training ROIs of ``epoch`` in a shuffled order, augmented for the epoch."""
        self.train_set.set_epoch(epoch)
        if isinstance(self.loss_fn, ScheduledLoss):
            self.loss_fn.set_epoch(epoch)
        return epoch_loader(self.train_set, self.config.batch_size, shuffled(len(self.train_set), generator))

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """The task's loss of a batch of ROIs and targets."""
        x, y = (tensor.to(self.device) for tensor in batch)
        return _batch_loss(self.config, self.loss_fn, self.model(x), y)

    def validate(self) -> dict[str, float]:
        """:func:`validate` on the validation ROIs."""
        return validate(self.config, self.model, self.val_set, self.device, self.natives)

    def save_best(self, record: dict[str, Any]) -> None:
        """The model, with the validation-chosen threshold and the ROI as its inference settings."""
        save_model(self.model, self.config.out)
        write_inference_settings(self.config.out, _inference_settings(self.config, record))

    def metrics(self, state: TrainState) -> dict[str, Any]:
        """The best epoch's validation numbers and the history."""
        return run_metrics(state, {"task": self.config.task, "model": self.config.model, "metric": self.metric})


def _inference_settings(config: TrainConfig, val: dict[str, float]) -> dict[str, Any]:
    spec = roi_spec(config.model)
    source = ("validation split, best mean native-grid Dice" if config.task == "nodule-seg"
              else "validation split, Youden's J")
    return {"threshold": val["val_threshold"], "threshold_source": source,
            "roi_shape_zyx": list(spec.shape), "roi_spacing_zyx_mm": list(spec.spacing),
            "min_diameter_mm": config.min_diameter_mm}
