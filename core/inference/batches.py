"""One way to run a model over many inputs: a fixed number at a time, one batch on the device.

Evaluation (malignancy and mask probabilities of a dataset), the detector's ROI scores and the
emphysema models' volume logits all go through :func:`batched_outputs`; the VOI segmentation's
test-time flips (:func:`lungai.inference.voi_segmentation.predict_rois`) keep their own loop,
because they sum each ROI's flips as the batches come back instead of keeping the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

BatchMaker = Callable[[range], Tensor]
"""Builds the model input for the items in a range (stacked along dimension 0, on the CPU)."""


def batched_outputs(model: nn.Module, count: int, make_batch: BatchMaker, batch_size: int,
                    device: str | torch.device | None = None) -> Iterator[Tensor]:
    """The model's outputs for items ``0 .. count - 1``, ``batch_size`` at a time, in order.

    The model runs in inference mode; each yielded tensor is one batch's output, as float on the
    CPU (dimension 0 indexes the batch's items).

    Args:
        model: in eval mode.
        count: how many items.
        make_batch: the input of the items in a range.
        batch_size: items per model call (at least 1).
        device: where the inputs go; ``None``: the model's device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    target = device if device is not None else next(model.parameters()).device
    for start in range(0, count, batch_size):
        with torch.inference_mode():
            output = model(make_batch(range(start, min(start + batch_size, count))).to(target))
        yield output.float().cpu()
