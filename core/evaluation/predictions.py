"""Load nodule checkpoints and run them over ROIs: class probabilities or soft masks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lungai.data.lidc_vois import VOICase
from lungai.data.roi_dataset import NoduleROIDataset
from lungai.errors import WeightsError
from lungai.inference.batches import batched_outputs
from lungai.models.checkpoint import load_model, read_header
from lungai.models.registry import get_spec
from lungai.preprocessing.roi import ROI_SPECS, roi_spec


def centre_crop_like(target: Tensor, shape: torch.Size) -> Tensor:
    """Centre-crop the trailing spatial axes of ``target`` to ``shape``'s (models that crop their output)."""
    slices = [slice(None)] * target.ndim
    for axis in range(2, target.ndim):
        extra = target.shape[axis] - shape[axis]
        slices[axis] = slice(extra // 2, extra // 2 + shape[axis])
    return target[tuple(slices)]


def predict_batches(model: nn.Module, dataset: Dataset, batch_size: int, device: str) -> list[Tensor]:
    """Model outputs (logits) for every item, in order, one tensor per item (on the CPU)."""
    model.eval()
    n = len(dataset)  # type: ignore[arg-type]  # torch's Dataset declares no __len__; the datasets passed here have one
    outputs: list[Tensor] = []
    for batch in batched_outputs(model, n, lambda items: torch.stack([dataset[i][0] for i in items]), batch_size,
                                 device):
        outputs.extend(batch)
    return outputs


def malignancy_probabilities(model: nn.Module, dataset: Dataset, batch_size: int = 32,
                             device: str = "cpu") -> np.ndarray:
    """Probability of the malignant class (softmax of the logits) per item."""
    logits = predict_batches(model, dataset, batch_size, device)
    return np.array([torch.softmax(row, dim=0)[1].item() for row in logits], dtype=float)


def mask_probabilities(model: nn.Module, dataset: Dataset, batch_size: int = 8,
                       device: str = "cpu") -> list[np.ndarray]:
    """Sigmoid mask probabilities per item, on the model's output grid, ``(z, y, x)``."""
    return [torch.sigmoid(out[0]).numpy() for out in predict_batches(model, dataset, batch_size, device)]


def nodule_model_name(folder: Path) -> str:
    """The registry name of a nodule model checkpoint (from ``metrics.json`` or the architecture).

    Raises:
        WeightsError: the checkpoint is not one of the nodule models.
    """
    metrics = folder / "metrics.json"
    if metrics.is_file():
        name = json.loads(metrics.read_text(encoding="utf-8")).get("model")
        if name in ROI_SPECS:
            return str(name)
    architecture = read_header(folder)["architecture"]
    names = [name for name in ROI_SPECS if get_spec(name).architecture.model_class.__name__ == architecture]
    if len(names) != 1:
        raise WeightsError(f"{folder} holds a {architecture}, not a nodule model",
                           f"pass a checkpoint of {', '.join(ROI_SPECS)}")
    return names[0]


def load_nodule_model(folder: Path, device: str = "cpu") -> tuple[str, nn.Module]:
    """Load a nodule model checkpoint and name it.

    Returns:
        ``(registry name, model in eval mode)``.
    """
    return nodule_model_name(folder), load_model(folder, device)


def roi_dataset(cases: Sequence[VOICase], model_name: str, task: str,
                label_rule: str = "ge2_readers_gt3") -> NoduleROIDataset:
    """Centred, unaugmented ROIs of ``cases`` for ``model_name``."""
    two_d = len(get_spec(model_name).input_shape) == 3
    return NoduleROIDataset(cases, roi_spec(model_name), task, label_rule, None, 0, two_d)
