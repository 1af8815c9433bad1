"""Which nodules an evaluation covers: a split of the committed split file, or a whole folder."""

from __future__ import annotations

from pathlib import Path

from lungai.data.lidc_vois import VOICase, list_vois
from lungai.data.splits import cases_for_split, load_split

EVAL_SPLITS = ("test", "val", "all")


def evaluation_cases(data: Path, split: str) -> list[VOICase]:
    """The cases of ``data`` in ``split`` (``all``: every case, as for an external test set).

    Raises:
        ValueError: unknown split, or no case of it in ``data``.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    cases = list_vois(data).cases
    chosen = cases if split == "all" else cases_for_split(cases, load_split(), split)
    if not chosen:
        raise ValueError(f"no {split} cases of the committed split in {data}")
    return chosen


def reference_cases(reference: Path, part: str) -> list[VOICase]:
    """Training or validation cases of the reference folder (for baselines and thresholds).

    Raises:
        ValueError: if the reference folder has no case of ``part``.
    """
    cases = cases_for_split(list_vois(reference).cases, load_split(), part)
    if not cases:
        raise ValueError(f"{reference} has no {part} cases of the committed split; pass the lidc_vois "
                         "folder as the reference data")
    return cases
