"""ROIs for the detection classifier: inserted real nodules (positives) and real lung tissue (negatives).

* Positives: nodule VOIs of one split (``lidc_vois/``, the committed patient split), each pasted
  ``insertions_per_nodule`` times (randomly flipped and rotated) at random lung sites of the
  background scans (:mod:`lungai.data.lesion_insertion`); the ROI is centred on the pasted
  mask's centroid moved by up to ``centre_jitter_mm`` (a candidate is never exactly central),
  its target is the pasted mask.
* Negatives: ROIs of real lung tissue of the backgrounds with empty masks: the candidate
  filter's blobs (hard negatives: vessel crossings and branchings, fissure knots, scars, the
  chest wall of the closed lung mask) and random lung points (vessels, fissures, parenchyma),
  never inside a background's known real lesions (its excluded tumour regions and
  :data:`lungai.data.lesion_insertion.ELASTIX_NODULE`). Other small unlabelled real nodules in
  the backgrounds may be among them. Optionally (``medial_negatives``) also
  soft-tissue points (vessels, bronchial walls) of the lung next to the mediastinum and hila
  (:func:`medial_zone`), where the filter's strongest false blobs lie.
* Ground-glass and part-solid VOIs (``nodules.csv`` ``Texture`` 1-3, :func:`texture_group`) can be
  pasted more often than solid ones (``texture_insertions``): they are a tenth of the training
  VOIs. The texture rating only decides how often a VOI is pasted; it is never a model input.
* Training and validation negatives come from alternating ``slab_mm`` thick axial slabs of each
  background (even slabs train, odd slabs validation), so model selection never scores the
  very tissue it trained on.

Models see pixels only: the ROI and the mask; the VOI's csv columns are not model inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from lungai.data.lesion_insertion import Background, InsertionConfig, augment_voi, place_nodules
from lungai.data.lidc_vois import VOICase
from lungai.preprocessing.candidates import CandidateConfig, find_candidates
from lungai.preprocessing.detection_rois import DETECTION_ROI, extract_rois, roi_grid
from lungai.preprocessing.lesion_region import mediastinum

logger = logging.getLogger(__name__)

TEXTURE_GROUPS = ("non-solid", "part-solid", "solid")
"""``nodules.csv`` ``Texture_value`` 1-2 (non-solid / ground-glass), 3 (part-solid), 4-5 (solid)."""

SUBSOLID = ("non-solid", "part-solid")

OUTPUT_CROP = (1, 2, 2)
"""What ``convlstm_nodule`` crops from each side of its output (its default ``crop``)."""


@dataclass(frozen=True)
class DetectionDataConfig:
    """How the ROI set is made.

    Attributes:
        insertions_per_nodule: times each VOI is pasted (each time flipped/rotated anew).
        nodules_per_scan: VOIs pasted into one copy of a background at once.
        min_diameter_mm: smaller VOIs (by ``nodules.csv``) are left out, as LUNA16 does.
        hard_negatives: candidate-filter blobs taken per background (the strongest).
        random_negatives: random lung points taken per background.
        centre_jitter_mm: largest offset of a positive ROI's centre from the nodule centroid.
        slab_mm: thickness of the alternating axial slabs that split negatives.
        seed: random seed.
        texture_insertions: times each non-solid or part-solid VOI (:data:`SUBSOLID`) is
            pasted; ``None``: ``insertions_per_nodule`` like the solid ones.
        medial_negatives: extra negatives per background: random soft-tissue (>= -500 HU)
            lung voxels within ``medial_mm`` of the mediastinum (:func:`medial_zone`).
        medial_mm: depth of that zone into the lungs.
        pleural_fraction: share of the pasted nodules placed against the lung boundary
            (juxtapleural; :class:`~lungai.data.lesion_insertion.InsertionConfig`).
    """

    insertions_per_nodule: int = 3
    nodules_per_scan: int = 8
    min_diameter_mm: float = 3.0
    hard_negatives: int = 2000
    random_negatives: int = 600
    centre_jitter_mm: float = 3.0
    slab_mm: float = 40.0
    seed: int = 0
    texture_insertions: int | None = None
    medial_negatives: int = 0
    medial_mm: float = 20.0
    pleural_fraction: float = 0.0


def texture_group(case: VOICase) -> str:
    """The VOI's texture group (:data:`TEXTURE_GROUPS`) from ``nodules.csv``, ``unknown`` without a rating.

    An analysis variable and a sampling weight only, never a model input.
    """
    try:
        value = int(round(float(case.analysis.get("Texture_value", ""))))
    except ValueError:
        return "unknown"
    if value in (1, 2):
        return "non-solid"
    return "part-solid" if value == 3 else "solid" if value in (4, 5) else "unknown"


@dataclass
class RoiSet:
    """ROIs, targets and labels.

    Attributes:
        rois: ``(N, z, y, x)`` float16 normalised ROIs (:data:`DETECTION_ROI`).
        masks: ``(N, z-2, y-4, x-4)`` uint8 targets on the model's cropped output grid.
        labels: ``(N,)`` 1 nodule, 0 not.
        sources: where each came from (``case_id@background`` or ``negative@background``).
    """

    rois: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    sources: list[str]

    def save(self, path: str | Path) -> None:
        """Write as a compressed ``.npz`` (no pickles)."""
        np.savez_compressed(path, rois=self.rois, masks=self.masks, labels=self.labels,
                            sources=np.array(self.sources, dtype=str))

    @classmethod
    def load(cls, path: str | Path) -> RoiSet:
        """Read a set written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["rois"], data["masks"], data["labels"], [str(s) for s in data["sources"]])

    @classmethod
    def concatenate(cls, parts: Sequence[RoiSet]) -> RoiSet:
        """One set from several."""
        return cls(np.concatenate([p.rois for p in parts]), np.concatenate([p.masks for p in parts]),
                   np.concatenate([p.labels for p in parts]), [s for p in parts for s in p.sources])


def _cropped(mask: np.ndarray) -> np.ndarray:
    cz, cy, cx = OUTPUT_CROP
    return mask[:, cz:mask.shape[1] - cz, cy:mask.shape[2] - cy, cx:mask.shape[3] - cx]


def mask_rois(mask: sitk.Image, centres: Sequence[Sequence[float]], values: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour ROIs of a label map, 1 where it equals each centre's value, cropped to the output."""
    out = np.zeros((len(centres), *DETECTION_ROI.shape), np.uint8)
    for i, (centre, value) in enumerate(zip(centres, values)):
        roi = sitk.Resample(mask, roi_grid(centre), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        out[i] = sitk.GetArrayViewFromImage(roi) == value
    return _cropped(out)


def _jitter(rng: np.random.Generator, limit: float) -> np.ndarray:
    direction = rng.normal(size=3)
    return direction / np.linalg.norm(direction) * limit * rng.random() ** (1 / 3)


def positive_rois(cases: Sequence[VOICase], backgrounds: Sequence[Background], config: DetectionDataConfig,
                  rng: np.random.Generator) -> RoiSet:
    """Paste the VOIs into the backgrounds and cut an ROI around each pasted nodule."""
    kept = [c for c in cases if c.diameter_mm >= config.min_diameter_mm]
    order = kept * config.insertions_per_nodule
    if config.texture_insertions is not None:
        order = ([c for c in kept if texture_group(c) not in SUBSOLID] * config.insertions_per_nodule
                 + [c for c in kept if texture_group(c) in SUBSOLID] * config.texture_insertions)
    rng.shuffle(order)
    parts = []
    for start in range(0, len(order), config.nodules_per_scan):
        background = backgrounds[(start // config.nodules_per_scan) % len(backgrounds)]
        samples = [augment_voi(c.load(), rng) for c in order[start:start + config.nodules_per_scan]]
        scan = place_nodules(background, samples, rng, InsertionConfig(pleural_fraction=config.pleural_fraction))
        centres = [np.asarray(n.centre_lps_mm) + _jitter(rng, config.centre_jitter_mm) for n in scan.nodules]
        rois = extract_rois(scan.image, centres).astype(np.float16)
        masks = mask_rois(scan.mask, centres, range(1, len(centres) + 1))
        parts.append(RoiSet(rois, masks, np.ones(len(centres), np.uint8),
                            [f"{n.case_id}@{background.name}" for n in scan.nodules]))
    logger.info("positives: %d ROIs from %d VOIs", sum(len(p.labels) for p in parts), len(cases))
    return RoiSet.concatenate(parts)


def _slab_parity(image: sitk.Image, points: np.ndarray, slab_mm: float) -> np.ndarray:
    """0 for points in even ``slab_mm`` slabs (by LPS z from the scan's origin), 1 for odd ones."""
    return (np.floor((points[:, 2] - image.GetOrigin()[2]) / slab_mm).astype(int) % 2).astype(np.uint8)


def negative_points(background: Background, config: DetectionDataConfig, rng: np.random.Generator) -> np.ndarray:
    """LPS points of real lung tissue away from the known lesions: filter blobs and random lung voxels.

    Random voxels are drawn outside the excluded regions and those that fall on another known lesion
    are then dropped, so the draws (and the ROI sets of earlier runs) stay as they were.
    """
    candidates = find_candidates(background.image, background.lungs,
                                 CandidateConfig(max_candidates=config.hard_negatives))
    lungs = sitk.GetArrayViewFromImage(background.lungs) > 0
    allowed = lungs & ~background.excluded
    points = []
    for c in candidates:
        index = background.image.TransformPhysicalPointToIndex(c.centre_lps_mm)
        if allowed[index[2], index[1], index[0]]:
            points.append(c.centre_lps_mm)
    voxels = np.argwhere(allowed)
    for index in voxels[rng.choice(len(voxels), config.random_negatives, replace=False)]:
        points.append(background.image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]]))
    if config.medial_negatives:
        hu = sitk.GetArrayViewFromImage(background.image)
        medial = np.argwhere(allowed & (hu >= -500) & medial_zone(background.lungs, config.medial_mm))
        chosen = medial[rng.choice(len(medial), min(config.medial_negatives, len(medial)), replace=False)]
        logger.info("%s: %d medial negatives of %d soft-tissue voxels near the mediastinum", background.name,
                    len(chosen), len(medial))
        for index in chosen:
            points.append(background.image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]]))
    return _off_lesions(background, np.asarray(points, float))


def _off_lesions(background: Background, points: np.ndarray) -> np.ndarray:
    """The points that lie on none of the background's known lesions."""
    lesions = background.known_lesions()
    if not len(points):
        return points
    index = np.array([background.image.TransformPhysicalPointToIndex([float(v) for v in p]) for p in points])
    return points[~lesions[index[:, 2], index[:, 1], index[:, 0]]]


def medial_zone(lung_labels: sitk.Image, depth_mm: float) -> np.ndarray:
    """Bool ``(z, y, x)``: lung voxels within ``depth_mm`` of the mediastinum (hila, mediastinal border).

    The mediastinum is :func:`lungai.preprocessing.lesion_region.mediastinum`: slice by slice, the
    non-lung voxels between the two lungs' medial edges within the lungs' front-to-back extent.
    """
    labels = sitk.GetArrayViewFromImage(lung_labels)
    between = mediastinum(labels)
    distance = ndimage.distance_transform_edt(~between, sampling=np.asarray(lung_labels.GetSpacing())[::-1])
    return (labels > 0) & (distance <= depth_mm)


def negative_rois(background: Background, config: DetectionDataConfig, rng: np.random.Generator,
                  part: str) -> RoiSet:
    """Negative ROIs of one background in the ``train`` (even) or ``val`` (odd) slabs."""
    points = negative_points(background, config, rng)
    points = points[_slab_parity(background.image, points, config.slab_mm) == (part == "val")]
    rois = extract_rois(background.image, points).astype(np.float16)
    masks = np.zeros((len(points), *_cropped(np.zeros((1, *DETECTION_ROI.shape))).shape[1:]), np.uint8)
    return RoiSet(rois, masks, np.zeros(len(points), np.uint8), [f"negative@{background.name}"] * len(points))


def build_roi_set(cases: Sequence[VOICase], backgrounds: Sequence[Background], part: str,
                  config: DetectionDataConfig | None = None) -> RoiSet:
    """The ROI set of one part (``train`` or ``val``): positives from ``cases``, negatives from the slabs."""
    cfg = config or DetectionDataConfig()
    rng = np.random.default_rng([cfg.seed, 0 if part == "train" else 1])
    positives = positive_rois(cases, backgrounds, cfg, rng)
    negatives = [negative_rois(b, cfg, rng, part) for b in backgrounds]
    result = RoiSet.concatenate([positives, *negatives])
    logger.info("%s ROI set: %d positives, %d negatives", part, int(result.labels.sum()),
                int((result.labels == 0).sum()))
    return result


class DetectionRoiDataset(Dataset):
    """A :class:`RoiSet` as tensors, with random flips along each axis when ``augment``.

    Items are ``(roi (1, z, y, x), mask (1, z', y', x'), label ())`` float32 tensors.
    """

    def __init__(self, rois: RoiSet, augment: bool = False, seed: int = 0) -> None:
        self.set = rois
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.set.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        roi = self.set.rois[index].astype(np.float32)
        mask = self.set.masks[index].astype(np.float32)
        if self.augment:
            for axis in range(3):
                if self.rng.random() < 0.5:
                    roi, mask = np.flip(roi, axis), np.flip(mask, axis)
        return (torch.from_numpy(np.ascontiguousarray(roi))[None], torch.from_numpy(np.ascontiguousarray(mask))[None],
                torch.tensor(float(self.set.labels[index])))
