"""The batches of one epoch: torch ``DataLoader``s over seeded samplers.

Every sampler draws from a generator the training engine seeds from ``(seed, epoch)``
(:func:`lungai.training.engine.seed_epoch`), so an epoch's batches are the same in a repeated run
and in a run resumed after the previous epoch. Loading happens in the training process
(``num_workers=0``): the datasets are small, in memory, and augment from their own seeded draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler


def epoch_loader(dataset: Dataset[Any], batch_size: int,
                 sampler: RandomSampler | WeightedRandomSampler) -> DataLoader[Any]:
    """Batches of ``batch_size`` in ``sampler``'s order; the incomplete last batch is dropped (batch norm).

    An epoch shorter than one batch gives a single batch of all of it.

    Args:
        dataset: the training samples.
        batch_size: samples per batch.
        sampler: the epoch's order (:func:`shuffled`, :func:`balanced`).
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=len(sampler) >= batch_size,
                      num_workers=0, generator=_worker_seed_source())


def batch_loader(dataset: Dataset[Any], batches: Sampler[list[int]]) -> DataLoader[Any]:
    """Batches whose indices ``batches`` draws (a batch sampler), loaded in the training process."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=0, generator=_worker_seed_source())


def _worker_seed_source() -> torch.Generator:
    """The generator a ``DataLoader`` draws its (here unused) worker seed from at every epoch.

    Its own, so that the draw leaves torch's global generator (dropout) and the sampler's alone.
    """
    return torch.Generator()


def shuffled(size: int, generator: torch.Generator) -> RandomSampler:
    """Every index of a dataset of ``size`` samples once, in an order drawn from ``generator``."""
    return RandomSampler(range(size), generator=generator)


def balanced(labels: Sequence[int], generator: torch.Generator) -> WeightedRandomSampler:
    """``len(labels)`` indices drawn with replacement so that both classes are equally likely.

    Args:
        labels: 0 or 1 per sample.
        generator: the epoch's generator.
    """
    values = torch.tensor(labels)
    counts = torch.bincount(values, minlength=2).clamp(min=1).float()
    return WeightedRandomSampler((1.0 / counts)[values].tolist(), len(labels), replacement=True, generator=generator)


class HalfPositiveBatches(Sampler[list[int]]):
    """``steps`` batches of indices, each half positives and half negatives, drawn with replacement.

    Args:
        positives: indices of the positive samples.
        negatives: indices of the negative samples.
        batch_size: indices per batch (the positives are ``batch_size // 2`` of them).
        steps: batches per epoch.
        rng: the epoch's generator.
        positive_p: sampling probabilities of ``positives`` (``None``: uniform).
    """

    def __init__(self, positives: np.ndarray, negatives: np.ndarray, batch_size: int, steps: int,
                 rng: np.random.Generator, positive_p: np.ndarray | None = None) -> None:
        self.positives, self.negatives = positives, negatives
        self.batch_size, self.steps = batch_size, steps
        self.rng, self.positive_p = rng, positive_p

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        half = self.batch_size // 2
        for _ in range(self.steps):
            drawn = np.r_[self.rng.choice(self.positives, half, p=self.positive_p),
                          self.rng.choice(self.negatives, self.batch_size - half)]
            yield [int(i) for i in drawn]
