"""Training of the detection false-positive classifier (``convlstm_nodule`` on candidate ROIs).

The ROI sets are made once (:mod:`lungai.data.detection_dataset`) and cached in the run
folder (``rois_train.npz``, ``rois_val.npz``). Each epoch draws ``steps_per_epoch`` batches,
half positives and half negatives (:class:`lungai.training.samplers.HalfPositiveBatches`), with
random flips; positives of non-solid and part-solid VOIs can be drawn ``texture_weight`` times
as often as solid ones (the texture rating is a sampling weight only, never a model input). The
loss is the mean voxel BCE of the predicted mask against the pasted mask plus the BCE of the ROI
score (:func:`lungai.pipeline.detection.centre_max_logit`) against the label, so the mask the
model draws and the score the detector thresholds are trained together. After every epoch the
model is scored on the validation ROIs (validation-split VOIs, negatives from the other slabs).
The training engine (:mod:`lungai.training.engine`) runs the epochs: the best AUC is kept as
``config.json`` + ``model.safetensors`` with ``metrics.json``, ``last/`` holds a resumable
state, ``train.log`` records every epoch, and a run folder is only resumed with the same
settings (:data:`RESUME_MAY_CHANGE` aside).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from lungai.data.detection_dataset import DetectionRoiDataset, RoiSet
from lungai.evaluation.metrics import roc_auc
from lungai.models.checkpoint import save_model
from lungai.models.convlstm_nodule import ConvLSTMNoduleConfig
from lungai.models.registry import build_model
from lungai.pipeline.detection import centre_max_logit, roi_scores
from lungai.training.engine import METRICS_FILE, RunSpec, TrainState, run_training
from lungai.training.samplers import HalfPositiveBatches, batch_loader

logger = logging.getLogger(__name__)

#: Settings a resumed run may change: the epoch budget (the cosine schedule is stretched), the
#: patience, the threads and the folder's path.
RESUME_MAY_CHANGE = frozenset({"epochs", "patience", "threads", "out"})
CPU_MODEL = {"conv_filters": 4, "lstm_filters": (4, 8), "head_filters": 4}
"""The CPU-sized ``convlstm_nodule`` used for detection (same layers as the paper's, fewer filters)."""


def model_of_width(filters: int) -> dict[str, Any]:
    """The detection ``convlstm_nodule`` of width ``filters``: conv and head filters, ConvLSTMs of it and twice it.

    ``model_of_width(4)`` is :data:`CPU_MODEL`; the paper's network is far wider.
    """
    return {"conv_filters": filters, "lstm_filters": (filters, 2 * filters), "head_filters": filters}


@dataclass
class DetectionTrainConfig:
    """Settings of a detection training run.

    Attributes:
        out: the run folder.
        epochs: epoch budget.
        steps_per_epoch: batches per epoch.
        batch_size: ROIs per batch (half positive, half negative).
        lr: Adam learning rate (cosine decay over ``epochs``).
        mask_weight: weight of the mask BCE next to the score BCE.
        patience: stop after this many epochs without a better validation AUC.
        max_val_negatives: validation negatives scored per epoch (a fixed seeded subset).
        seed: random seed.
        threads: torch CPU threads.
        model_config: ``ConvLSTMNoduleConfig`` fields.
        texture_weight: sampling weight of positives from non-solid and part-solid VOIs (those
            named in ``train_detection``'s ``subsolid_cases``) against solid ones.
        data_config: how the ROI sets were made (``DetectionDataConfig`` fields per part),
            recorded in ``metrics.json``.
    """

    out: Path
    epochs: int = 12
    steps_per_epoch: int = 60
    batch_size: int = 16
    lr: float = 2e-3
    mask_weight: float = 1.0
    patience: int = 4
    max_val_negatives: int = 800
    seed: int = 0
    threads: int = 1
    model_config: dict[str, Any] = field(default_factory=lambda: dict(CPU_MODEL))
    texture_weight: float = 1.0
    data_config: dict[str, Any] = field(default_factory=dict)


def _loss(model: nn.Module, rois: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
          mask_weight: float) -> torch.Tensor:
    logits = model(rois)
    bce = nn.functional.binary_cross_entropy_with_logits
    return bce(centre_max_logit(logits), labels) + mask_weight * bce(logits, masks)


def _subsample_negatives(rois: RoiSet, limit: int, seed: int) -> RoiSet:
    """All positives and at most ``limit`` negatives (a seeded random subset)."""
    negatives = np.flatnonzero(rois.labels == 0)
    if len(negatives) <= limit:
        return rois
    keep = np.sort(np.r_[np.flatnonzero(rois.labels == 1),
                         np.random.default_rng(seed).choice(negatives, limit, replace=False)])
    return RoiSet(rois.rois[keep], rois.masks[keep], rois.labels[keep], [rois.sources[i] for i in keep])


def validate(model: nn.Module, val: RoiSet) -> dict[str, float]:
    """AUC of the ROI scores, and the sensitivity where 95% / 99% of the negatives are rejected."""
    scores = roi_scores(model.eval(), val.rois.astype(np.float32))
    labels = val.labels.astype(int)
    negatives = np.sort(scores[labels == 0])
    out = {"auc": float(roc_auc(scores, labels))}
    for keep in (0.95, 0.99):
        cut = negatives[min(int(keep * len(negatives)), len(negatives) - 1)]
        out[f"sensitivity_at_specificity_{keep}"] = float(np.mean(scores[labels == 1] > cut))
    return out


def _positive_probabilities(train: RoiSet, positives: np.ndarray, subsolid_cases: frozenset[str],
                            weight: float) -> np.ndarray | None:
    """Sampling probabilities of the positives: ``weight`` for those of ``subsolid_cases``, 1 for the rest."""
    if weight == 1.0:
        return None
    weights = np.array([weight if train.sources[i].split("@")[0] in subsolid_cases else 1.0 for i in positives])
    logger.info("positives: %d of %d from non-solid / part-solid VOIs, drawn with weight %g",
                int(np.sum(weights != 1.0)), len(weights), weight)
    return weights / weights.sum()


def train_detection(config: DetectionTrainConfig, train: RoiSet, val: RoiSet,
                    subsolid_cases: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Train (or resume) the classifier; the best validation AUC is written to ``config.out``.

    Args:
        config: the run's settings.
        train: the training ROIs.
        val: the validation ROIs.
        subsolid_cases: case ids of the non-solid and part-solid VOIs (``config.texture_weight``).

    Returns:
        The metrics of the best epoch (also in ``metrics.json``).

    Raises:
        WeightsError: ``config.out`` holds a run with other settings, or its state cannot be loaded.
    """
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}
    spec = RunSpec(config.out, config.epochs, config.patience, config.seed, config.threads, settings,
                   RESUME_MAY_CHANGE, fresh_start="delete its last/ folder to train from scratch")
    run_training(spec, lambda _resumed: _DetectionStrategy.build(config, train, val, subsolid_cases))
    return json.loads((config.out / METRICS_FILE).read_text(encoding="utf-8"))


@dataclass
class _DetectionStrategy:
    """Half-positive batches of candidate ROIs, mask and score BCE, validation ROI AUC."""

    config: DetectionTrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    dataset: DetectionRoiDataset
    val: RoiSet
    positives: np.ndarray
    negatives: np.ndarray
    positive_p: np.ndarray | None
    metric: str = "auc"

    @classmethod
    def build(cls, config: DetectionTrainConfig, train: RoiSet, val: RoiSet,
              subsolid_cases: frozenset[str]) -> _DetectionStrategy:
        """The model, Adam with a cosine schedule, and the ROI sets (validation negatives subsampled)."""
        model = build_model("convlstm_nodule", ConvLSTMNoduleConfig(**config.model_config))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        positives, negatives = np.flatnonzero(train.labels == 1), np.flatnonzero(train.labels == 0)
        return cls(config, model, optimizer, scheduler, DetectionRoiDataset(train, augment=True),
                   _subsample_negatives(val, config.max_val_negatives, config.seed), positives, negatives,
                   _positive_probabilities(train, positives, subsolid_cases, config.texture_weight))

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader[Any]:
        """``steps_per_epoch`` half-positive batches drawn from ``(seed, epoch)``, flipped from ``(seed, epoch, 1)``."""
        self.dataset.rng = np.random.default_rng([self.config.seed, epoch, 1])
        draw = HalfPositiveBatches(self.positives, self.negatives, self.config.batch_size, self.config.steps_per_epoch,
                                   np.random.default_rng([self.config.seed, epoch]), self.positive_p)
        return batch_loader(self.dataset, draw)

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """Score BCE plus ``mask_weight`` times the mask BCE."""
        rois, masks, labels = batch
        return _loss(self.model, rois, masks, labels, self.config.mask_weight)

    def validate(self) -> dict[str, float]:
        """:func:`validate` on the validation ROIs."""
        return validate(self.model, self.val)

    def save_best(self, record: dict[str, Any]) -> None:
        """The model."""
        save_model(self.model, self.config.out)

    def metrics(self, state: TrainState) -> dict[str, Any]:
        """The best epoch (1-based) and its validation numbers, and the ROI counts."""
        train = self.dataset.set
        return {
            "task": "detection-fp-reduction",
            "model": "convlstm_nodule",
            "best_epoch": state.best_epoch + 1,
            "validation": {k: v for k, v in state.best_record.items() if k not in ("epoch", "train_loss", "seconds")},
            "validation_data": "validation-split VOIs pasted into the background scans; negatives from the odd slabs",
            "train_rois": {"positives": int(train.labels.sum()), "negatives": int((train.labels == 0).sum())},
            "val_rois": {"positives": int(self.val.labels.sum()), "negatives": int((self.val.labels == 0).sum())},
        }
