"""Emphysema inference on a whole scan: the ConvLSTM scanner's probability and the low-attenuation map.

The scanner's probability is reported only where it can be read honestly:

- Weights whose manifest entry (and so model card) marks them as demonstration weights (a
  ``training_data`` entry starting with :data:`DEMONSTRATION_MARKER`, as the shipped
  ``convlstm_scanner``, trained on simulated emphysema) are run only when asked for
  (``lungai run --emphysema-probability``), and their probability carries
  :data:`DEMONSTRATION_CAVEAT`. Other weights run whenever the emphysema task does
  (:func:`scanner_by_default`).
- A probability that contradicts the measured LAA-950 gets a warning
  (:func:`disagreement_warning`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from lungai import labels
from lungai.preprocessing.emphysema_input import LAA_THRESHOLD_HU, input_shape, prepare_volume
from lungai.weights.manifest import Manifest, ModelEntry

SCANNER_MODEL = "convlstm_scanner"
#: How a weights release marks demonstration weights: a ``training_data`` entry of the manifest
#: (shown in the model card's datasets) starting with this, in any case.
DEMONSTRATION_MARKER = "DEMONSTRATION ONLY"
#: What accompanies a probability from demonstration weights, wherever it is shown.
DEMONSTRATION_CAVEAT = "demonstration weights trained on simulated emphysema, not validated on real scans"
#: The disagreement rule (:func:`disagreement_warning`): a probability at or above
#: :data:`PROBABILITY_CUTOFF` says "emphysema"; LAA-950 below :data:`LOW_LAA_950_PERCENT` of both
#: lungs is within the usual normal range of inspiratory CT, at or above
#: :data:`HIGH_LAA_950_PERCENT` clearly is not. Between the two, either answer is plausible.
PROBABILITY_CUTOFF = 0.5
LOW_LAA_950_PERCENT = 5.0
HIGH_LAA_950_PERCENT = 10.0


def to_tensor(volume: np.ndarray) -> torch.Tensor:
    """A prepared ``uint8`` volume as the model's ``(1, D, H, W)`` float input in [0, 1]."""
    return torch.from_numpy(volume.astype(np.float32) / 255.0)[None]


def is_demonstration(entry: ModelEntry) -> bool:
    """Whether a manifest entry is marked as demonstration weights (:data:`DEMONSTRATION_MARKER`)."""
    return any(text.strip().upper().startswith(DEMONSTRATION_MARKER) for text in entry.training_data)


def scanner_by_default(manifest: Manifest) -> bool:
    """Whether the emphysema stage runs the scanner without being asked to.

    Args:
        manifest: the run's weights manifest.

    Returns:
        ``True`` when the manifest lists the scanner and its weights are not demonstration weights.
    """
    entry = manifest.models.get(SCANNER_MODEL)
    return entry is not None and not is_demonstration(entry)


def probability_caveat(manifest: Manifest) -> str | None:
    """:data:`DEMONSTRATION_CAVEAT` for the manifest's demonstration scanner weights, else ``None``."""
    entry = manifest.models.get(SCANNER_MODEL)
    return DEMONSTRATION_CAVEAT if entry is not None and is_demonstration(entry) else None


def disagreement_warning(probability: float, laa_950_percent: float) -> str | None:
    """A warning when the scanner's probability and the measured LAA-950 point opposite ways.

    The rule: probability >= :data:`PROBABILITY_CUTOFF` with LAA-950 below
    :data:`LOW_LAA_950_PERCENT`, or probability below the cutoff with LAA-950 at or above
    :data:`HIGH_LAA_950_PERCENT`.

    Args:
        probability: the scanner's emphysema probability, 0..1.
        laa_950_percent: LAA-950 of both lungs, percent.

    Returns:
        The warning, or ``None`` when they do not disagree by that margin.
    """
    if probability >= PROBABILITY_CUTOFF and laa_950_percent < LOW_LAA_950_PERCENT:
        rule = f"probability >= {PROBABILITY_CUTOFF:g} with LAA-950 < {LOW_LAA_950_PERCENT:g} %"
    elif probability < PROBABILITY_CUTOFF and laa_950_percent >= HIGH_LAA_950_PERCENT:
        rule = f"probability < {PROBABILITY_CUTOFF:g} with LAA-950 >= {HIGH_LAA_950_PERCENT:g} %"
    else:
        return None
    return (f"the {SCANNER_MODEL} emphysema probability {probability:.2f} disagrees with the measured LAA-950 "
            f"{laa_950_percent:.1f} % of both lungs ({rule}); read the densitometry (and its warnings), not the model")


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
    prepared = prepare_volume(image, lung_labels, input_shape(model.config))
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
