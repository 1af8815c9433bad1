"""Training of the detection false-positive classifier (``convlstm_nodule`` on candidate ROIs).

The ROI sets are made once (:mod:`lungai.data.detection_dataset`) and cached in the run
folder (``rois_train.npz``, ``rois_val.npz``). Each epoch draws ``steps_per_epoch`` batches,
half positives and half negatives, with random flips; positives of non-solid and part-solid VOIs
can be drawn ``texture_weight`` times as often as solid ones (the texture rating is a sampling
weight only, never a model input). The loss is the mean voxel BCE of the
predicted mask against the pasted mask plus the BCE of the ROI score
(:func:`lungai.pipeline.detection.centre_max_logit`) against the label, so the mask the model
draws and the score the detector thresholds are trained together. After every epoch the model is
scored on the validation ROIs (validation-split VOIs, negatives from the other slabs); the best
AUC is kept as ``config.json`` + ``model.safetensors`` with ``metrics.json``, and ``last/``
holds a resumable state (:mod:`lungai.training.checkpointing`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lungai.data.detection_dataset import DetectionRoiDataset, RoiSet
from lungai.evaluation.metrics import roc_auc
from lungai.models.checkpoint import save_model
from lungai.models.convlstm_nodule import ConvLSTMNoduleConfig
from lungai.models.registry import build_model
from lungai.pipeline.detection import centre_max_logit, roi_scores
from lungai.training.checkpointing import has_training_state, load_training_state, save_training_state

logger = logging.getLogger(__name__)

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


def _batch(dataset: DetectionRoiDataset, rng: np.random.Generator, positives: np.ndarray, negatives: np.ndarray,
           size: int, positive_p: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    half = size // 2
    index = np.r_[rng.choice(positives, half, p=positive_p), rng.choice(negatives, size - half)]
    items = [dataset[int(i)] for i in index]
    return tuple(torch.stack(parts) for parts in zip(*items))  # type: ignore[return-value]  # a tuple of as many tensors as the items have parts; mypy cannot count them


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
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build_model("convlstm_nodule", ConvLSTMNoduleConfig(**config.model_config))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    state: dict[str, Any] = {"epoch": 0, "best_auc": -1.0, "stale": 0, "history": []}
    if has_training_state(config.out):
        state = load_training_state(config.out, model, optimizer, scheduler)
        logger.info("resuming after epoch %d", state["epoch"])
    dataset = DetectionRoiDataset(train, augment=True)
    val = _subsample_negatives(val, config.max_val_negatives, config.seed)
    positives, negatives = np.flatnonzero(train.labels == 1), np.flatnonzero(train.labels == 0)
    positive_p = _positive_probabilities(train, positives, subsolid_cases, config.texture_weight)
    while state["epoch"] < config.epochs and state["stale"] < config.patience:
        epoch = state["epoch"] + 1
        rng = np.random.default_rng([config.seed, epoch])
        dataset.rng = np.random.default_rng([config.seed, epoch, 1])
        model.train()
        start, total = time.perf_counter(), 0.0
        for _ in range(config.steps_per_epoch):
            rois, masks, labels = _batch(dataset, rng, positives, negatives, config.batch_size, positive_p)
            loss = _loss(model, rois, masks, labels, config.mask_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        metrics = validate(model, val)
        metrics.update(epoch=epoch, train_loss=total / config.steps_per_epoch, seconds=time.perf_counter() - start)
        logger.info("epoch %d: loss %.4f, val AUC %.4f, sens@spec0.99 %.3f (%.0f s)", epoch, metrics["train_loss"],
                    metrics["auc"], metrics["sensitivity_at_specificity_0.99"], metrics["seconds"])
        state["history"].append(metrics)
        state["epoch"] = epoch
        if metrics["auc"] > state["best_auc"]:
            state["best_auc"], state["stale"] = metrics["auc"], 0
            save_model(model, config.out)
            _write_metrics(config, train, val, metrics)
        else:
            state["stale"] += 1
        save_training_state(config.out, model, optimizer, scheduler, state)
    return json.loads((config.out / "metrics.json").read_text(encoding="utf-8"))


def _write_metrics(config: DetectionTrainConfig, train: RoiSet, val: RoiSet, best: dict[str, Any]) -> None:
    payload = {
        "task": "detection-fp-reduction",
        "model": "convlstm_nodule",
        "best_epoch": best["epoch"],
        "validation": {k: v for k, v in best.items() if k not in ("epoch", "train_loss", "seconds")},
        "validation_data": "validation-split VOIs pasted into the background scans; negatives from the odd slabs",
        "train_rois": {"positives": int(train.labels.sum()), "negatives": int((train.labels == 0).sum())},
        "val_rois": {"positives": int(val.labels.sum()), "negatives": int((val.labels == 0).sum())},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    tmp = config.out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(config.out / "metrics.json")
