"""The malignancy stage: the ``resnet50_3d`` + ``nodule_cnn2d`` ensemble on each segmented nodule.

Each model reads a training-like VOI around the nodule's segmentation (its bounding box plus
the training VOIs' margins, :func:`lungai.inference.nodule_roi.voi_box`; the 2D model reads
the VOI's central slice) through the training ROI preprocessing. The estimate is the mean
of the two malignant-class probabilities. LIDC malignancy labels are radiologists'
suspicion, not pathology: the number is a model estimate, never a diagnosis
(:data:`lungai.io.findings.ESTIMATE_LABEL`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.inference.nodule_roi import predict_voi_malignancies, voi_box
from lungai.io.findings import Malignancy
from lungai.io.volume_arrays import spacing_zyx
from lungai.pipeline.models import ModelStore
from lungai.pipeline.nodules import SegmentedNodule
from lungai.preprocessing.roi import roi_spec

#: The ensemble, and whether each member reads a 2D slice.
ENSEMBLE: dict[str, bool] = {"resnet50_3d": False, "nodule_cnn2d": True}


def nodules_malignancy(models: ModelStore, hu: np.ndarray, image: sitk.Image,
                       nodules: list[SegmentedNodule]) -> list[Malignancy]:
    """The ensemble's estimate for each nodule, in order (each model runs in batches).

    Raises:
        WeightsError: a member's weights are missing or were trained on another ROI (exit code 10).
    """
    spacing = spacing_zyx(image)
    shape = (hu.shape[0], hu.shape[1], hu.shape[2])
    geometry = []
    for nodule in nodules:
        bbox = ndimage.find_objects(nodule.mask.astype(np.uint8))[0]
        geometry.append((np.array([nodule.box[a].start + (bbox[a].start + bbox[a].stop - 1) / 2 for a in range(3)]),
                         np.array([(b.stop - b.start) * s for b, s in zip(bbox, spacing)])))
    per_model = []
    for name, two_d in ENSEMBLE.items():
        models.check_roi(name, roi_spec(name))
        vois = [hu[voi_box(centre, extent, spacing, shape, odd_z=two_d).box] for centre, extent in geometry]
        per_model.append(predict_voi_malignancies(models.get(name), vois, spacing, roi_spec(name), two_d))
    return [Malignancy(probability=round(float(np.mean(votes)), 4), models=list(ENSEMBLE))
            for votes in zip(*per_model)]
