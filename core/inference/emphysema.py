"""Emphysema inference on a whole scan: the ConvLSTM scanner's probability and the low-attenuation map."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from lungai import labels
from lungai.data.emphysema_dataset import input_shape, prepare_volume, to_tensor
from lungai.data.emphysema_sim import LAA_THRESHOLD_HU

SCANNER_MODEL = "convlstm_scanner"


def emphysema_probability(model: nn.Module, image: sitk.Image, lung_labels: sitk.Image, device: str = "cpu") -> float:
    """The model's emphysema probability for a scan, with the paper's preprocessing.

    Args:
        model: an emphysema model (e.g. ``convlstm_scanner``) in eval mode on ``device``.
        image: the CT in HU.
        lung_labels: its lung labels (same grid).
        device: where the model is.

    Returns:
        The probability, 0..1 (a model estimate, not a diagnosis).
    """
    prepared = prepare_volume(image, lung_labels, input_shape(model.config))  # type: ignore[arg-type]
    with torch.inference_mode():
        logit = model(to_tensor(prepared.volume)[None].to(device)).float().reshape(-1)[0]
    return float(torch.sigmoid(logit).item())


def with_low_attenuation(lung_labels: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The lung labels with every lung voxel below -950 HU relabelled ``labels.LOW_ATTENUATION``.

    A label map holds one value per voxel, so those voxels leave the lung segments of the map;
    lung volumes and densitometry are measured before, on the whole lungs.
    """
    lungs = sitk.GetArrayFromImage(lung_labels)
    hu = sitk.GetArrayViewFromImage(image)
    lungs[(lungs > 0) & (hu < LAA_THRESHOLD_HU)] = labels.LOW_ATTENUATION.value
    result = sitk.GetImageFromArray(lungs.astype(np.uint8))
    result.CopyInformation(lung_labels)
    return result
