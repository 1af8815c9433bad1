"""The training loop: seeded, resumable, early-stopped on the validation split.

One run trains one model for one task on a ``lidc_vois``-like folder split by the committed
patient-level split. Each epoch reseeds everything from ``(seed, epoch)``, so a run is
bit-identical when repeated on the same machine and thread count, and a run resumed from
``last/`` continues exactly as if it had never stopped. The best epoch by the validation metric
(ROC AUC for malignancy; for segmentation the mean Dice on the VOIs' native grids at the
probability threshold that maximises it on the validation split) is saved as ``config.json`` +
``model.safetensors`` + ``metrics.json`` in the run folder; ``train.log`` records every epoch.
Its ``config.json`` also records the validation-chosen threshold and the ROI under
``inference`` (:func:`lungai.models.checkpoint.write_inference_settings`), so evaluation
and the pipeline apply it as validated. Segmentation losses ignore the ROI's padding
(:mod:`lungai.training.seg_losses`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
from lungai.training.checkpointing import has_training_state, load_training_state, save_training_state
from lungai.training.config import TrainConfig
from lungai.training.seg_losses import build_masked_loss

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
LOG_FILE = "train.log"
#: Settings a resumed run may change: the epoch budget (the cosine schedule is stretched), the
#: patience, where it runs, the folders' paths, and init_weights (unused when resuming).
RESUME_MAY_CHANGE = frozenset({"epochs", "patience", "device", "num_threads", "data", "out", "init_weights"})


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


def _make_optimizer(config: TrainConfig, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
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


class _RunLog:
    """Attach a file handler for ``train.log`` to the ``lungai`` logger for the run's duration."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.root = logging.getLogger("lungai")
        self.level = self.root.level

    def __enter__(self) -> _RunLog:
        self.root.addHandler(self.handler)
        if self.root.level == logging.NOTSET or self.root.level > logging.INFO:
            self.root.setLevel(logging.INFO)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)
        self.handler.close()


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
        WeightsError: the saved state cannot be resumed.
    """
    config.out.mkdir(parents=True, exist_ok=True)
    with _RunLog(config.out / LOG_FILE):
        return _train(config, on_event or (lambda _event: None), resume)


def _train(config: TrainConfig, on_event: Callable[[TrainEvent], None], resume: bool) -> TrainResult:
    device = resolve_device(config.device)
    torch.set_num_threads(config.num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    parts = _split_cases(config)
    train_set, val_set = _make_datasets(config, parts)
    logger.info("%s %s: %d train / %d val cases%s on %s", config.task, config.model, len(train_set.cases), len(val_set),
                f" and {train_set.n_negatives} negative ROIs" if train_set.n_negatives else "", device)
    _seed_everything(config.seed, -1)
    model = _make_model(config).to(device)
    optimizer, scheduler = _make_optimizer(config, model)
    loss_fn = _make_loss(config, train_set).to(device)
    name = metric_name(config.task)
    natives = NativeTargets.of(val_set.cases) if config.task == "nodule-seg" else None
    state: dict[str, Any] = {"epoch": 0, "best_metric": -1.0, "best_epoch": -1, "bad_epochs": 0,
                             "history": [], "stopped_early": False, "train_seconds": 0.0}
    resuming = resume and has_training_state(config.out)
    if config.init_weights is not None and not resuming:
        _load_init_weights(model, config.init_weights)
    if resuming:
        _refuse_other_settings(config)
        state = load_training_state(config.out, model, optimizer, scheduler)
        logger.info("resumed %s after epoch %d", config.out, state["epoch"])
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != config.epochs:
            logger.warning("epoch budget changed from %d to %d: the cosine schedule now ends at epoch %d",
                           scheduler.T_max, config.epochs, config.epochs)
            scheduler.T_max = config.epochs
    steps = max(1, len(train_set) // config.batch_size)  # the incomplete last batch is dropped (batch norm)
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        started = time.perf_counter()
        generator = _seed_everything(config.seed, epoch)
        train_set.set_epoch(epoch)
        if isinstance(loss_fn, ScheduledLoss):
            loss_fn.set_epoch(epoch)
        order = torch.randperm(len(train_set), generator=generator).tolist()
        model.train()
        losses: list[float] = []
        for step in range(steps):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            items = [train_set[i] for i in index]
            x = torch.stack([item[0] for item in items]).to(device)
            y = torch.stack([item[1] for item in items]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = _batch_loss(config, loss_fn, model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            on_event(TrainEvent("batch", epoch, config.epochs, step + 1, steps, float(np.mean(losses)),
                                state["history"][-1][name] if state["history"] else float("nan")))
        if scheduler is not None:
            scheduler.step()
        val = validate(config, model, val_set, device, natives)
        seconds = time.perf_counter() - started
        state["train_seconds"] += seconds
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), **val, "seconds": round(seconds, 2)}
        state["history"].append(record)
        improved = np.isfinite(val[name]) and val[name] > state["best_metric"]
        if improved:
            state.update(best_metric=float(val[name]), best_epoch=epoch, bad_epochs=0, best_record=record)
            save_model(model, config.out)
            write_inference_settings(config.out, _inference_settings(config, val))
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["stopped_early"] = bool(config.patience and state["bad_epochs"] >= config.patience)
        save_training_state(config.out, model, optimizer, scheduler, state)
        _write_metrics(config, state)
        logger.info("epoch %d/%d loss %.4f %s %.4f (best %.4f at epoch %d) %.1f s%s", epoch + 1, config.epochs,
                    record["train_loss"], name, val[name], state["best_metric"], state["best_epoch"] + 1, seconds,
                    "; early stop" if state["stopped_early"] else "")
        on_event(TrainEvent("epoch", epoch, config.epochs, steps, steps, record["train_loss"], float(val[name])))
    return TrainResult(config.out, state["best_epoch"], state["best_metric"], state["epoch"], state["stopped_early"])


def _inference_settings(config: TrainConfig, val: dict[str, float]) -> dict[str, Any]:
    spec = roi_spec(config.model)
    source = ("validation split, best mean native-grid Dice" if config.task == "nodule-seg"
              else "validation split, Youden's J")
    return {"threshold": val["val_threshold"], "threshold_source": source,
            "roi_shape_zyx": list(spec.shape), "roi_spacing_zyx_mm": list(spec.spacing),
            "min_diameter_mm": config.min_diameter_mm}


def _refuse_other_settings(config: TrainConfig) -> None:
    """Refuse to resume a run folder whose recorded settings (``metrics.json`` ``config``) differ
    from ``config`` in anything but :data:`RESUME_MAY_CHANGE`: the result would be neither run.

    Raises:
        WeightsError: naming each setting that differs.
    """
    try:
        recorded = json.loads((config.out / METRICS_FILE).read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return  # nothing recorded to compare; the saved state is still checked when it is loaded
    if not isinstance(recorded, dict):
        return
    current = json.loads(json.dumps(config.to_json()))  # tuples as lists, as they were recorded
    changed = sorted(key for key, value in current.items()
                     if key not in RESUME_MAY_CHANGE and key in recorded and recorded[key] != value)
    if changed:
        details = ", ".join(f"{key} {recorded[key]!r} -> {current[key]!r}" for key in changed)
        raise WeightsError(f"{config.out} holds a run trained with other settings ({details}), so it "
                           "cannot be resumed with these", "pass another --out, or --restart to train from scratch")


def _write_metrics(config: TrainConfig, state: dict[str, Any]) -> None:
    """``metrics.json``: the saved (best) epoch's validation numbers, the history, the config."""
    write_run_metrics(config.out, state, {"task": config.task, "model": config.model,
                                          "metric": metric_name(config.task)}, config.to_json())


def write_run_metrics(out: Path, state: dict[str, Any], head: dict[str, Any], config: dict[str, Any],
                      **extra: Any) -> None:
    """Write a run's ``metrics.json`` atomically (shared by every trainer).

    Args:
        out: the run folder.
        state: the training state (best epoch and record, epochs run, history, time).
        head: the first keys (task, model, metric name).
        config: the run's configuration as JSON-ready values.
        **extra: keys placed after the best epoch's validation numbers.
    """
    best = state.get("best_record", {})
    metrics = {**head, "best_epoch": state["best_epoch"], **{k: v for k, v in best.items() if k.startswith("val_")},
               **extra, "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
               "train_seconds": round(state["train_seconds"], 1), "history": state["history"], "config": config}
    tmp = out / f".{METRICS_FILE}.tmp"
    tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / METRICS_FILE)
