"""Nodule VOIs as per-model tensors: resampled once, augmented on the fly, seeded per epoch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lungai.data.augment import AugmentConfig, augment_roi
from lungai.data.lidc_vois import VOICase
from lungai.preprocessing.roi import RoiSpec, normalize_hu, resample_to_spec, support_mask


class NoduleROIDataset(Dataset):
    """Model inputs and targets for the nodule tasks.

    Each VOI is read and resampled to the model's spacing once (kept in memory: the VOIs are
    small); each access cuts the ROI, augmented when ``augment`` is given. The random draws of
    item ``i`` in epoch ``e`` come from ``numpy.random.default_rng([seed, e, i])``, so a run is
    reproducible and resumable at any epoch without saving generator states.

    Args:
        cases: the nodules.
        spec: the model's ROI.
        task: ``malignancy`` (target: class index) or ``nodule-seg`` (target: ``(2, z, y, x)``,
            the mask and the support, 1 where the ROI holds VOI content rather than padding).
        label_rule: the malignancy label rule; cases it excludes are dropped (malignancy only).
        augment: augmentation ranges, or ``None`` for plain centred ROIs.
        seed: the run's seed.
        channels_first_2d: the model takes 2D ``(C, H, W)`` inputs (the ROI must have one slice).
        negatives: normalised lesion-free volumes at the model's spacing
            (:func:`lungai.data.negative_rois.negative_volumes`), items after the cases with
            an empty mask (nodule-seg only).
    """

    def __init__(self, cases: Sequence[VOICase], spec: RoiSpec, task: str, label_rule: str = "ge2_readers_gt3",
                 augment: AugmentConfig | None = None, seed: int = 0, channels_first_2d: bool = False,
                 negatives: Sequence[np.ndarray] = ()) -> None:
        if negatives and task != "nodule-seg":
            raise ValueError("negative ROIs are for the nodule-seg task only")
        if task == "malignancy":
            cases = [c for c in cases if c.label(label_rule) is not None]
        self.cases = list(cases)
        self.spec = spec
        self.task = task
        self.label_rule = label_rule
        self.augment = augment or AugmentConfig.off()
        self.seed = seed
        self.epoch = 0
        self.two_d = channels_first_2d
        self._labels = [int(c.label(label_rule) or 0) for c in self.cases] if task == "malignancy" else []
        self._volumes = [self._prepare(case) for case in self.cases]
        self._volumes += [(volume, np.stack([np.zeros_like(volume), support_mask(volume.shape)]))
                          for volume in negatives]

    def _prepare(self, case: VOICase) -> tuple[np.ndarray, np.ndarray | None]:
        sample = case.load()
        image, mask = resample_to_spec(sample.image, sample.mask if self.task == "nodule-seg" else None,
                                       sample.spacing_zyx, self.spec)
        if mask is not None:
            mask = np.stack([mask, support_mask(mask.shape)])
        return normalize_hu(image), mask

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws :meth:`__getitem__` uses."""
        self.epoch = epoch

    @property
    def labels(self) -> list[int]:
        """Malignancy labels in item order (malignancy task only)."""
        return list(self._labels)

    @property
    def n_negatives(self) -> int:
        """How many items are negatives (they follow the cases)."""
        return len(self._volumes) - len(self.cases)

    def __len__(self) -> int:
        return len(self._volumes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._volumes[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        roi, roi_mask = augment_roi(image, mask, self.spec.shape, rng, self.augment)
        x = torch.from_numpy(roi if self.two_d else roi[np.newaxis])
        if self.task == "malignancy":
            return x, torch.tensor(self._labels[index], dtype=torch.long)
        return x, torch.from_numpy(roi_mask)
