"""The malignancy stage: suspicion of malignancy and characteristics of each segmented nodule.

Each nodule's measured features (:func:`lungai.preprocessing.nodule_features.nodule_features`,
from the scan's HU in the nodule's segmentation box and LungAI's mask: the code that training
and evaluation run on the LIDC VOIs) go through the shipped ``measured_nodule`` regressions
(:class:`lungai.models.measured_nodule.MeasuredNodule`): the malignancy head estimates
**radiologists' suspicion on LIDC** (at least 2 readers rating malignancy > 3; not pathology,
never a diagnosis), calibrated on the validation split; the other heads estimate the readers'
texture, calcification, spiculation, lobulation and margin ratings. Every choice (feature
sets, calibration, thresholds) was made on the validation split (docs/results.md).

Lung-RADS then uses what Lung-RADS uses (:func:`lungai.pipeline.lung_rads.with_characteristics`):
a calcification probability at or above the checkpoint's validation-chosen threshold puts the
nodule in category 1 (benign calcification rule), and the texture head sets the nodule type
of the size rule only where the checkpoint records that it beat the HU rule on validation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from lungai.data.lidc_characteristics import TEXTURES
from lungai.errors import WeightsError
from lungai.io.findings import Characteristics, Malignancy, Nodule
from lungai.io.volume_arrays import spacing_zyx
from lungai.models.measured_nodule import MeasuredNodule
from lungai.pipeline.config import MEASURED_MODEL
from lungai.pipeline.lung_rads import with_characteristics
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.nodules import SegmentedNodule
from lungai.preprocessing.nodule_features import FEATURE_NAMES, feature_vector, nodule_features

_BINARY = ("calcification", "spiculation", "lobulation", "ill_defined_margin")


@dataclass(frozen=True)
class NoduleRating:
    """What the stage says about one nodule.

    Attributes:
        malignancy: the estimate of radiologists' suspicion on LIDC.
        characteristics: the characteristic estimates.
    """

    malignancy: Malignancy
    characteristics: Characteristics


def nodules_rating(models: ModelStore, hu: np.ndarray, image: sitk.Image,
                   nodules: list[SegmentedNodule]) -> list[NoduleRating]:
    """The rating of each nodule, in order.

    Raises:
        WeightsError: the scorer's weights are missing or were fitted on other features (exit code 10).
    """
    if not nodules:
        return []
    model = models.get(MEASURED_MODEL)
    if not isinstance(model, MeasuredNodule) or tuple(model.config.features) != FEATURE_NAMES:
        raise WeightsError(f"the {MEASURED_MODEL} weights are not regressions on the features this LungAI measures",
                           "use the weights released with this LungAI version")
    settings = models.inference(MEASURED_MODEL)
    spacing = spacing_zyx(image)
    rows = np.stack([feature_vector(nodule_features(hu[n.box], n.mask, spacing)) for n in nodules])
    with torch.no_grad():
        heads = {k: v.numpy() for k, v in model.probabilities(torch.as_tensor(rows, dtype=torch.float32)).items()}
    present_from = float(settings.get("present_from", 0.5))
    calibration = settings.get("malignancy_calibration")
    return [NoduleRating(Malignancy(probability=round(float(heads["malignancy"][i]), 4), models=[MEASURED_MODEL],
                                    calibration=calibration),
                         _characteristics({k: v[i] for k, v in heads.items()}, present_from))
            for i in range(len(nodules))]


def _characteristics(heads: dict[str, np.ndarray], present_from: float) -> Characteristics:
    texture = int(np.argmax(heads["texture"]))
    values = {name: round(float(heads[name]), 4) for name in _BINARY}
    return Characteristics(texture=TEXTURES[texture], texture_probability=round(float(heads["texture"][texture]), 4),
                           calcification_probability=values["calcification"],
                           spiculation_probability=values["spiculation"], lobulation_probability=values["lobulation"],
                           ill_defined_margin_probability=values["ill_defined_margin"],
                           present=[name for name in _BINARY if values[name] >= present_from])


def rated(nodule: Nodule, rating: NoduleRating, settings: dict[str, Any]) -> Nodule:
    """The nodule with its rating, its Lung-RADS category refined by it (see the module docstring)."""
    lung_rads = None if nodule.lung_rads is None else with_characteristics(nodule, rating.characteristics, settings)
    return replace(nodule, malignancy=rating.malignancy, characteristics=rating.characteristics, lung_rads=lung_rads)
