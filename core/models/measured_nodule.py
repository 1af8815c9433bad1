"""Logistic regressions on a nodule's measured features: suspicion of malignancy and characteristics.

Not a network: standardised features (``(x - mean) / scale``) times a coefficient matrix plus
a bias give one logit per row; a binary head owns one row (sigmoid), a head of K classes owns
K rows (softmax). A binary head's logit may be recalibrated (``a * logit + b``, Platt scaling
fitted on the validation split; ``(1, 0)`` leaves it as it is). Wrapped as an ``nn.Module`` so
the fitted coefficients ship, verify and load like every other LungAI weights
(``config.json`` + ``model.safetensors``). The features come from
:mod:`lungai.preprocessing.nodule_features`; the fitting is :mod:`lungai.training.measured`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class MeasuredNoduleConfig:
    """Configuration of :class:`MeasuredNodule`.

    Attributes:
        features: the input features, in order (names of :mod:`lungai.preprocessing.nodule_features`).
        heads: the outputs, in row order (``malignancy``, ``texture``, ...).
        classes: classes of each head (2: one sigmoid row; K > 2: K softmax rows).
        feature_sets: the feature set each head was fitted on (chosen on the validation split);
            coefficients of the features outside it are 0.
    """

    features: tuple[str, ...] = ("log_volume",)
    heads: tuple[str, ...] = ("malignancy",)
    classes: tuple[int, ...] = (2,)
    feature_sets: tuple[str, ...] = ("size",)

    def __post_init__(self) -> None:
        if not (len(self.heads) == len(self.classes) == len(self.feature_sets)) or not self.features:
            raise ValueError("heads, classes and feature_sets must have one entry per head, and features one or more")
        if any(k < 2 for k in self.classes):
            raise ValueError(f"every head needs at least 2 classes, got {self.classes}")


def head_rows(config: MeasuredNoduleConfig) -> dict[str, slice]:
    """The logit rows of each head."""
    rows, start = {}, 0
    for head, k in zip(config.heads, config.classes):
        width = 1 if k == 2 else k
        rows[head] = slice(start, start + width)
        start += width
    return rows


class MeasuredNodule(nn.Module):
    """Per-head logistic regressions on standardised measured features (see the module docstring).

    Input ``(N, len(features))`` raw features; :meth:`forward` returns ``(N, rows)`` calibrated
    logits, :meth:`probabilities` each head's probabilities.
    """

    output_activation: ClassVar[str] = "sigmoid"

    def __init__(self, config: MeasuredNoduleConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MeasuredNoduleConfig()
        features, rows = len(config.features), head_rows(config)
        total = max(r.stop for r in rows.values())
        self.mean = nn.Parameter(torch.zeros(features), requires_grad=False)
        self.scale = nn.Parameter(torch.ones(features), requires_grad=False)
        self.weight = nn.Parameter(torch.zeros(total, features))
        self.bias = nn.Parameter(torch.zeros(total))
        self.calibration = nn.Parameter(torch.tensor([[1.0, 0.0]] * total), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        logits = ((x - self.mean) / self.scale) @ self.weight.T + self.bias
        return logits * self.calibration[:, 0] + self.calibration[:, 1]

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        """Each head's probabilities: ``(N,)`` for a binary head (its positive class), ``(N, K)`` otherwise."""
        logits = self.forward(x)
        out = {}
        for head, rows in head_rows(self.config).items():
            part = logits[:, rows]
            out[head] = torch.sigmoid(part[:, 0]) if part.shape[1] == 1 else torch.softmax(part, dim=1)
        return out
