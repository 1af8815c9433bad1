"""Per-model training defaults (the papers' recipes, adapted where a CPU budget demands it).

=================  ==========  =====  ============  ======================  =====  ========
model              task        opt.   lr            loss                    batch  epochs
=================  ==========  =====  ============  ======================  =====  ========
``nodule_cnn2d``   malignancy  adam   1e-3 cosine   class-weighted CE       32     40
``resnet50_3d``    malignancy  adam   1e-4 cosine   class-weighted NLL      16     30
``resunet3d``      nodule-seg  adam   1e-3 cosine   BCE + Dice              8      40
``convlstm_nodule`` nodule-seg adam   1e-3 cosine   BCE 3 epochs, then Dice 8      40
``r3d_denseunet``  nodule-seg  adam   1e-3 cosine   BCE 3 epochs, then Dice 8      40
=================  ==========  =====  ============  ======================  =====  ========

The classification paper trains its 2D CNN with class weights and rotation/flip/zoom
augmentation; the ResNet50 paper uses an NLL loss; the Res-UNet paper uses BCE for the first 3
epochs, then Dice; LungAI trains ``resunet3d`` with the sum of BCE and Dice from the first epoch
(nnU-Net's choice), because a CPU budget of about ten epochs cannot spend three on BCE alone,
which drives a small foreground towards low probabilities. Segmentation losses ignore the ROI's
padding (:mod:`lungai.training.seg_losses`). ``r3d_denseunet`` is the tumour model: train it on
the large nodules only (``min_diameter_mm=15``, ``lungai train --min-diameter-mm 15``). Learning
rates, batch sizes and epoch counts the papers leave open (or that a two-core CPU cannot afford)
are LungAI choices. Every run early-stops on the validation split.

``size="cpu"`` swaps in :attr:`Recipe.cpu_model_config`, narrower versions of the 3D networks
(same depth and layout, fewer filters) that train on a two-core CPU in minutes per epoch
instead of the better part of an hour; the checkpoint's ``config.json`` records the widths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungai.models.registry import get_spec
from lungai.training.config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """Training defaults of one model.

    Attributes:
        task: the task the model is trained for.
        optimizer: ``adam`` or ``sgd``.
        lr: initial learning rate.
        loss: a loss name of :func:`lungai.models.losses.build_loss`.
        class_weights: balanced class weights (classifiers).
        batch_size: samples per step.
        epochs: default epoch budget.
        patience: early-stopping patience in epochs.
        weight_decay: L2 penalty.
        cpu_model_config: model configuration overrides for CPU training (``size="cpu"``).
    """

    task: str
    optimizer: str
    lr: float
    loss: str
    class_weights: bool
    batch_size: int
    epochs: int
    patience: int = 10
    weight_decay: float = 1e-5
    cpu_model_config: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "nodule_cnn2d": Recipe("malignancy", "adam", 1e-3, "ce", True, 32, 40),
    "resnet50_3d": Recipe("malignancy", "adam", 1e-4, "nll", True, 16, 30,
                          cpu_model_config={"widths": (8, 16, 32, 64), "stem_channels": 8}),
    "resunet3d": Recipe("nodule-seg", "adam", 1e-3, "bce_dice", False, 8, 40,
                        cpu_model_config={"filters": (8, 16, 32, 64), "bottom_filters": 128}),
    "convlstm_nodule": Recipe("nodule-seg", "adam", 1e-3, "bce_then_dice", False, 8, 40,
                              cpu_model_config={"conv_filters": 4, "lstm_filters": (8, 16), "head_filters": 8}),
    "r3d_denseunet": Recipe("nodule-seg", "adam", 1e-3, "bce_then_dice", False, 8, 40,
                            cpu_model_config={"encoder_filters": (8, 16, 32), "bottleneck_filters": 64,
                                              "bottleneck_layers": 1}),
}


def recipe(model: str) -> Recipe:
    """The recipe of a model.

    Raises:
        KeyError: for a model without a recipe.
    """
    try:
        return RECIPES[model]
    except KeyError:
        raise KeyError(f"no training recipe for {model!r}; trainable: {', '.join(RECIPES)}") from None


def models_for_task(task: str) -> list[str]:
    """The models trainable for a task."""
    return [name for name, r in RECIPES.items() if r.task == task]


SIZES = ("paper", "cpu")


def make_config(task: str, model: str, data: Path, out: Path, size: str = "paper", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` with the model's recipe as defaults.

    Args:
        task: must be the recipe's task.
        model: the model name.
        data: the dataset folder.
        out: the run folder.
        size: ``paper`` (the paper's widths) or ``cpu`` (the recipe's ``cpu_model_config``).
        **overrides: any :class:`TrainConfig` field; ``None`` values are ignored. A
            ``model_config`` is laid over the size's network settings.

    Returns:
        The configuration.

    Raises:
        KeyError: no recipe for the model.
        ValueError: the model is not trained for ``task``, an unknown size, or a
            ``model_config`` setting the model does not have.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    r = recipe(model)
    if r.task != task:
        raise ValueError(f"{model} is a {r.task} model, not {task}; {task} models: {', '.join(models_for_task(task))}")
    network = dict(overrides.pop("model_config", None) or {})
    known = {f.name for f in dataclasses.fields(get_spec(model).architecture.config_class)}
    unknown = sorted(set(network) - known)
    if unknown:
        raise ValueError(f"{model} has no setting {', '.join(unknown)}; its settings: {', '.join(sorted(known))}")
    values: dict[str, Any] = {"optimizer": r.optimizer, "lr": r.lr, "loss": r.loss, "class_weights": r.class_weights,
                              "batch_size": r.batch_size, "epochs": r.epochs, "patience": r.patience,
                              "weight_decay": r.weight_decay,
                              "model_config": {**(r.cpu_model_config if size == "cpu" else {}), **network}}
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig(task=task, model=model, data=data, out=out, **values)
