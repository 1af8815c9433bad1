"""Parameter counts that can be compared with the papers' tables."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def count_parameters(module: nn.Module, bn_statistics: bool = False) -> int:
    """Count the parameters of a module.

    Args:
        module: any module (may live on the ``meta`` device).
        bn_statistics: also count the running mean and variance of batch-norm layers, as
            Keras does (4 per channel instead of PyTorch's 2 trainable). The papers' parameter
            tables were made with Keras, so this is the convention to compare them with.

    Returns:
        The number of scalar parameters.
    """
    total = sum(p.numel() for p in module.parameters())
    if bn_statistics:
        for layer in module.modules():
            if isinstance(layer, _BatchNorm) and layer.running_mean is not None and layer.running_var is not None:
                total += layer.running_mean.numel() + layer.running_var.numel()
    return total
