"""The emphysema models' training cases, a patient-level split and the training dataset.

Preprocessing (the paper's, :mod:`lungai.preprocessing.emphysema_input`, used alike by training,
evaluation and ``lungai run``): the lung
mask of :func:`lungai.preprocessing.lung_mask.segment_lungs`; everything outside it is set to
the top of the intensity window (it reads as soft tissue); the volume is cropped to the lungs'
bounding box and resized to 35 slices (about 9 mm apart for an adult's lungs) of 128x128
(in-plane low-pass filtered before the resize; slices are sampled, not averaged). Intensities
are clipped to [-1024, -400] HU and scaled to [0, 1]. The in-plane size is the one the model's
FC layer was built for: 16 x its ``feature_grid`` (128 for the paper's models, smaller for the
CPU-sized ones), so a checkpoint alone says how its input is made.

The split is by patient (every scan of a patient in one part), stratified by the patient's
label (1 if any of their scans is positive), from a seed: the same CSV and seed always give
the same split, so models trained separately are compared on the same cases.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn
from torch.utils.data import Dataset

from lungai.data.splits import SplitConfig, make_split
from lungai.data.weak_labels import WeakLabelCase, read_weak_labels
from lungai.inference.batches import batched_outputs
from lungai.inference.emphysema import to_tensor
from lungai.io.volume_arrays import to_lps
from lungai.preprocessing.emphysema_input import PreparedVolume, image_arrays, prepare_arrays
from lungai.preprocessing.lung_mask import segment_lungs

logger = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def _cache_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|lungs-v1"
    return hashlib.sha1(text.encode()).hexdigest()


def _lung_mask(case: WeakLabelCase, hu_image: sitk.Image, cache_dir: Path | None) -> np.ndarray:
    """The case's LPS lung mask; computed with :func:`segment_lungs` once, then read from ``cache_dir``."""
    cached = cache_dir / f"{_cache_key(case.image_path)}.lungs.npz" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as data:
            return np.unpackbits(data["bits"], count=int(np.prod(data["shape"]))).reshape(data["shape"]).astype(bool)
    _, lung, _ = image_arrays(hu_image, segment_lungs(hu_image).labels)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.stem}.tmp.npz")
        np.savez(tmp, bits=np.packbits(lung), shape=np.array(lung.shape))
        tmp.replace(cached)
    return lung


def prepare_case(case: WeakLabelCase, shape: tuple[int, int, int], cache_dir: Path | None = None) -> PreparedVolume:
    """Read a CSV case and prepare it; its lung mask is cached in ``cache_dir`` (any input shape reuses it).

    Raises:
        LungAIError: the scan cannot be read or has no lungs.
    """
    image = case.load().image
    hu = sitk.GetArrayFromImage(to_lps(image)).astype(np.int16)
    return prepare_arrays(hu, _lung_mask(case, image, cache_dir), shape)


def split_cases(cases: Sequence[WeakLabelCase], seed: int = 0,
                fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[WeakLabelCase]]:
    """Patient-level train / val / test parts, stratified by patient label (binary: label > 0).

    Raises:
        ValueError: a part would be empty, or a whole-scan test patient is among the cases.
    """
    patients: dict[str, int] = {}
    for case in cases:
        patients[case.patient_id] = max(patients.get(case.patient_id, 0), int(case.label > 0))
    split = make_split(patients, SplitConfig(fractions=fractions, seed=seed))
    parts = {part: [c for c in cases if split[c.patient_id] == part] for part in ("train", "val", "test")}
    for part, items in parts.items():
        if not items:
            raise ValueError(f"the {part} part of the split is empty: the CSV has too few patients "
                             f"({len(patients)}) for fractions {fractions}")
    return parts


def split_fingerprint(parts: dict[str, list[WeakLabelCase]]) -> str:
    """A short hash of which cases are in which part (to check that models share a split)."""
    text = ";".join(f"{part}:{','.join(sorted(c.case_id for c in items))}" for part, items in sorted(parts.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class EmphysemaVolumeDataset(Dataset):
    """Prepared volumes with binary targets, optionally augmented.

    Augmentation (train only): a left-right flip with probability 0.5 and an in-plane shift of
    up to 1/16 of the size, drawn from ``numpy.random.default_rng([seed, epoch, index])`` so a
    run is reproducible and resumable at any epoch.

    Args:
        volumes: prepared volumes.
        labels: their labels (> 0 is positive).
        augment: draw the augmentation.
        seed: the run's seed.
    """

    def __init__(self, volumes: Sequence[PreparedVolume], labels: Sequence[int], augment: bool = False,
                 seed: int = 0) -> None:
        self.volumes = list(volumes)
        self.labels = [int(label > 0) for label in labels]
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws :meth:`__getitem__` uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        volume = self.volumes[index].volume
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < 0.5:
                volume = volume[:, :, ::-1]
            limit = max(1, volume.shape[1] // 16)
            dy, dx = (int(v) for v in rng.integers(-limit, limit + 1, size=2))
            volume = np.roll(volume, (dy, dx), axis=(1, 2))
        return to_tensor(np.ascontiguousarray(volume)), torch.tensor([float(self.labels[index])])



def default_cache_dir(csv_path: Path) -> Path:
    """``<csv folder>/.lungai_cache``: prepared volumes, shared by every run on that CSV."""
    return Path(csv_path).parent / ".lungai_cache"


def load_parts(data: Path, split_seed: int = 0, max_cases: int | None = None) -> dict[str, list[WeakLabelCase]]:
    """The CSV's cases split by patient (the first ``max_cases`` of each part when given)."""
    parts = split_cases(read_weak_labels(data), seed=split_seed, fractions=SPLIT_FRACTIONS)
    if max_cases is not None:
        parts = {part: _first_with_both_labels(items, max_cases) for part, items in parts.items()}
    return parts


def _first_with_both_labels(cases: list[WeakLabelCase], n: int) -> list[WeakLabelCase]:
    chosen = cases[:n]
    for label in (0, 1):
        if not any(int(c.label > 0) == label for c in chosen):
            other = next((c for c in cases if int(c.label > 0) == label), None)
            if other is not None and len(chosen) > 1:
                chosen = [c for c in chosen if c is not chosen[-1]] + [other]
    return chosen


def predict_logits(model: nn.Module, dataset: EmphysemaVolumeDataset, device: str, batch_size: int = 4) -> np.ndarray:
    """Volume logits of a dataset, in order."""
    model.eval()
    outputs = [logits.reshape(-1) for logits in batched_outputs(
        model, len(dataset), lambda items: torch.stack([dataset[i][0] for i in items]), batch_size, device)]
    return torch.cat(outputs).numpy().astype(np.float64)
