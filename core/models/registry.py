"""The model registry: every LungAI model by name, with its default configuration.

A *name* (``convlstm_scanner``, ``mil_mean``, ...) is an architecture plus a default
configuration; several names may share an architecture (the three MIL baselines). A
checkpoint records the architecture and its full configuration, so it loads without the
registry name (see :mod:`lungai.models.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lungai.models.convlstm_nodule import (
    ConvLSTMNodule,
    ConvLSTMNoduleConfig,
    ConvLSTMNoduleEnsemble,
    ConvLSTMNoduleEnsembleConfig,
)
from lungai.models.convlstm_scanner import ConvLSTMScanner, ConvLSTMScannerConfig
from lungai.models.emphysema_baselines import CNN3d, CNN3dConfig, MILCNN2d, MILCNN2dConfig
from lungai.models.measured_nodule import MeasuredNodule, MeasuredNoduleConfig
from lungai.models.nodule_cnn2d import NoduleCNN2d, NoduleCNN2dConfig
from lungai.models.r3d_denseunet import R3DDenseUNet, R3DDenseUNetConfig
from lungai.models.resnet50_3d import ResNet50_3d, ResNet50_3dConfig
from lungai.models.resunet3d import ResUNet3d, ResUNet3dConfig
from lungai.models.summary import count_parameters

NODULE_PAPER = "3D CNN + bidirectional ConvLSTM hybrid for lung nodule segmentation (LUNA16)"
EMPHYSEMA_PAPER = "Weakly supervised emphysema detection with a ConvLSTM scanner"
TUMOUR_PAPER = "Recurrent 3D-DenseUNet for lung tumour segmentation (NSCLC-Radiomics)"
CLASSIFICATION_PAPER = "2D CNN on 124x124 LIDC-IDRI nodule ROIs for malignancy"
SEGMENTATION_RECOGNITION_PAPER = "3D Res-UNet nodule segmentation + 3D ResNet50 malignancy (LIDC-IDRI)"


@dataclass(frozen=True)
class Architecture:
    """A model class and the dataclass that configures it.

    Attributes:
        model_class: the ``nn.Module`` subclass; its constructor takes one config.
        config_class: the configuration dataclass.
    """

    model_class: type[nn.Module]
    config_class: type


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Attributes:
        name: the registry name.
        architecture: model and config classes.
        default_config: builds the name's default configuration.
        paper: the source paper, in words.
        task: what LungAI uses the model for.
        input_shape: the paper's input without the batch axis, ``(C, D, H, W)`` or ``(C, H, W)``.
    """

    name: str
    architecture: Architecture
    default_config: Callable[[], Any]
    paper: str
    task: str
    input_shape: tuple[int, ...]

    def build(self, config: Any | None = None) -> nn.Module:
        """Instantiate the model.

        Args:
            config: a configuration of the architecture; ``None`` uses the default.

        Returns:
            The freshly initialised model.
        """
        return self.architecture.model_class(config if config is not None else self.default_config())


ARCHITECTURES: dict[str, Architecture] = {
    arch.model_class.__name__: arch
    for arch in (
        Architecture(ConvLSTMNodule, ConvLSTMNoduleConfig),
        Architecture(ConvLSTMNoduleEnsemble, ConvLSTMNoduleEnsembleConfig),
        Architecture(ConvLSTMScanner, ConvLSTMScannerConfig),
        Architecture(MILCNN2d, MILCNN2dConfig),
        Architecture(CNN3d, CNN3dConfig),
        Architecture(R3DDenseUNet, R3DDenseUNetConfig),
        Architecture(NoduleCNN2d, NoduleCNN2dConfig),
        Architecture(ResUNet3d, ResUNet3dConfig),
        Architecture(ResNet50_3d, ResNet50_3dConfig),
        Architecture(MeasuredNodule, MeasuredNoduleConfig),
    )
}


def _spec(
    name: str, model_class: type[nn.Module], paper: str, task: str, input_shape: tuple[int, ...],
    default_config: Callable[[], Any] | None = None,
) -> ModelSpec:
    architecture = ARCHITECTURES[model_class.__name__]
    return ModelSpec(name, architecture, default_config or architecture.config_class, paper, task, input_shape)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("convlstm_nodule", ConvLSTMNodule, NODULE_PAPER,
              "false-positive classifier: scores the ROI around a blob candidate", (1, 10, 64, 64)),
        _spec("convlstm_scanner", ConvLSTMScanner, EMPHYSEMA_PAPER,
              "emphysema present/absent from volume labels", (1, 35, 128, 128)),
        _spec("mil_max", MILCNN2d, EMPHYSEMA_PAPER,
              "emphysema baseline: MIL 2D CNN, max pooling", (1, 35, 128, 128),
              lambda: MILCNN2dConfig(pooling="max")),
        _spec("mil_mean", MILCNN2d, EMPHYSEMA_PAPER,
              "emphysema baseline: MIL 2D CNN, mean pooling", (1, 35, 128, 128),
              lambda: MILCNN2dConfig(pooling="mean")),
        _spec("mil_product", MILCNN2d, EMPHYSEMA_PAPER,
              "emphysema baseline: MIL 2D CNN, product (noisy-or) pooling", (1, 35, 128, 128),
              lambda: MILCNN2dConfig(pooling="product")),
        _spec("cnn3d", CNN3d, EMPHYSEMA_PAPER,
              "emphysema baseline: 3D CNN", (1, 35, 128, 128)),
        _spec("r3d_denseunet", R3DDenseUNet, TUMOUR_PAPER,
              "lung tumour segmentation", (1, 8, 256, 256)),
        _spec("nodule_cnn2d", NoduleCNN2d, CLASSIFICATION_PAPER,
              "nodule benign/malignant (2D ensemble member)", (1, 124, 124)),
        _spec("resunet3d", ResUNet3d, SEGMENTATION_RECOGNITION_PAPER,
              "nodule segmentation", (1, 48, 192, 192)),
        _spec("resnet50_3d", ResNet50_3d, SEGMENTATION_RECOGNITION_PAPER,
              "nodule benign/malignant (3D ensemble member)", (1, 16, 48, 48)),
    )
}


def model_names() -> list[str]:
    """The registry names, in registry order."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """Look up a registry entry.

    Args:
        name: a registry name.

    Returns:
        Its spec.

    Raises:
        KeyError: for an unknown name; the message lists the known ones.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def build_model(name: str, config: Any | None = None) -> nn.Module:
    """Instantiate a registered model.

    Args:
        name: a registry name.
        config: a configuration of the name's architecture; ``None`` uses the name's default.

    Returns:
        The freshly initialised model.

    Raises:
        KeyError: for an unknown name.
        TypeError: if ``config`` is not the architecture's config class.
    """
    spec = get_spec(name)
    if config is not None and not isinstance(config, spec.architecture.config_class):
        raise TypeError(f"{name} takes a {spec.architecture.config_class.__name__}, got {type(config).__name__}")
    return spec.build(config)


def get_architecture(class_name: str) -> Architecture:
    """Look up an architecture by its model class name (as checkpoints record it).

    Args:
        class_name: e.g. ``"MILCNN2d"``.

    Returns:
        The architecture.

    Raises:
        KeyError: for an unknown class name.
    """
    try:
        return ARCHITECTURES[class_name]
    except KeyError:
        raise KeyError(f"unknown architecture {class_name!r}; known: {', '.join(ARCHITECTURES)}") from None


def count_configured_parameters(architecture: str, config: dict[str, Any]) -> int:
    """Trainable parameters of an architecture built from a checkpoint's or manifest's ``config``.

    Built on the ``meta`` device: nothing is allocated. Shipped weights use smaller configurations
    than the papers' (CPU-sized networks), so this differs from :func:`describe_models`' counts.

    Raises:
        KeyError: for an unknown architecture.
    """
    from lungai.models.checkpoint import config_from_dict

    spec = get_architecture(architecture)
    with torch.device("meta"):
        model = spec.model_class(config_from_dict(spec.config_class, config))
    return count_parameters(model)


def describe_models() -> list[dict[str, Any]]:
    """Summarise every registered model, for ``lungai info --models``.

    Models are built on the ``meta`` device: nothing is allocated or initialised for real.

    Returns:
        One dict per model, in registry order, with ``name``, ``class``, ``paper``, ``task``,
        ``parameters`` (trainable), ``parameters_keras`` (batch-norm running statistics
        included, the convention of the papers' tables), ``input_shape`` (without the batch
        axis) and ``output_activation`` (``sigmoid`` or ``softmax``, which the model's logits
        need).
    """
    rows = []
    for spec in MODELS.values():
        with torch.device("meta"):
            model = spec.build()
        rows.append({
            "name": spec.name,
            "class": spec.architecture.model_class.__name__,
            "paper": spec.paper,
            "task": spec.task,
            "parameters": count_parameters(model),
            "parameters_keras": count_parameters(model, bn_statistics=True),
            "input_shape": spec.input_shape,
            "output_activation": spec.architecture.model_class.output_activation,  # type: ignore[attr-defined]  # output_activation is a class attribute of LungAI's networks, not of nn.Module
        })
    return rows
