"""Patient-level train / val / test splits of the LIDC VOI dataset, and the committed split file.

The split is made once by a deterministic command and committed as
``core/data/splits/lidc_vois_split.csv`` (columns ``patient_id``, ``split``)::

    python -m lungai.data.splits make --data ../shared/data/lidc_vois \\
        --out core/data/splits/lidc_vois_split.csv --seed 0

Rules: every patient is in exactly one part (nodules are never split across parts); the parts
are about 70 / 15 / 15 % of the patients, stratified by patient label (a patient is malignant
if any of their nodules has ``Diagnosis_value`` 1); the whole-scan test patients
LIDC-IDRI-0001..0003 are never in the file (they must not be in the VOI set at all).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

import numpy as np

from lungai.data.holdout import WHOLE_SCAN_TEST_PATIENTS
from lungai.data.lidc_vois import VOICase, list_vois
from lungai.errors import InputNotFoundError, UnreadableInputError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PACKAGED_SPLIT = "lidc_vois_split.csv"
COLUMNS = ("patient_id", "split")

CaseT = TypeVar("CaseT")


@dataclass(frozen=True)
class SplitConfig:
    """How to split patients.

    Attributes:
        fractions: (train, val, test) fractions of the patients of each stratum; they sum to 1.
        seed: seed of the shuffle; the same seed and patients give the same split.
    """

    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    seed: int = 0


def patient_labels(cases: Iterable[VOICase]) -> dict[str, int]:
    """Patient label for stratification: 1 if any nodule has ``Diagnosis_value`` 1, else 0."""
    labels: dict[str, int] = {}
    for case in cases:
        malignant = int(case.labels["ge2_readers_gt3"] or 0)
        labels[case.patient_id] = max(labels.get(case.patient_id, 0), malignant)
    return labels


def _part_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    val, test = round(n * fractions[1]), round(n * fractions[2])
    return n - val - test, val, test


def make_split(labels: Mapping[str, int], config: SplitConfig | None = None) -> dict[str, str]:
    """Split patients into train / val / test, stratified by their label.

    Each stratum is sorted, shuffled with ``config.seed`` and cut by ``config.fractions``.

    Args:
        labels: patient id -> patient label (see :func:`patient_labels`).
        config: fractions and seed.

    Returns:
        patient id -> ``train``, ``val`` or ``test``.

    Raises:
        ValueError: a whole-scan test patient is among ``labels``, or the fractions are bad.
    """
    config = config or SplitConfig()
    if abs(sum(config.fractions) - 1.0) > 1e-6 or min(config.fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {config.fractions}")
    forbidden = sorted(WHOLE_SCAN_TEST_PATIENTS & set(labels))
    if forbidden:
        raise ValueError(f"whole-scan test patients must not be split: {', '.join(forbidden)}")
    rng = np.random.default_rng(config.seed)
    split: dict[str, str] = {}
    for stratum in sorted(set(labels.values())):
        patients = sorted(p for p, label in labels.items() if label == stratum)
        order = [patients[i] for i in rng.permutation(len(patients))]
        sizes = _part_sizes(len(order), config.fractions)
        bounds = np.cumsum((0, *sizes))
        for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:]):
            split.update({p: name for p in order[start:stop]})
    return dict(sorted(split.items()))


def write_split(split: Mapping[str, str], path: str | Path) -> None:
    """Write a split as csv (``patient_id``, ``split``), sorted by patient id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(sorted(split.items()))


def load_split(path: str | Path | None = None) -> dict[str, str]:
    """Read a split file.

    Args:
        path: a split csv; ``None`` reads the packaged ``lidc_vois_split.csv``.

    Returns:
        patient id -> ``train``, ``val`` or ``test``.

    Raises:
        InputNotFoundError: the file does not exist.
        UnreadableInputError: wrong columns, unknown split names, a patient listed twice, or a
            whole-scan test patient in the file.
    """
    source = resources.files("lungai.data") / "splits" / PACKAGED_SPLIT if path is None else Path(path)
    if not source.is_file():
        raise InputNotFoundError(f"split file {source} does not exist",
                                 "make it with `python -m lungai.data.splits make`")
    split: dict[str, str] = {}
    reader = csv.DictReader(io.StringIO(source.read_text(encoding="utf-8"), newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise UnreadableInputError(f"split file {source} has columns {reader.fieldnames}",
                                   f"it needs exactly {', '.join(COLUMNS)}")
    for row in reader:
        patient, part = row["patient_id"], row["split"]
        if part not in SPLITS or patient in split or patient in WHOLE_SCAN_TEST_PATIENTS:
            raise UnreadableInputError(f"split file {source} has a bad row {patient},{part}",
                                       f"each patient once, split one of {', '.join(SPLITS)}, "
                                       "no whole-scan test patient")
        split[patient] = part
    return split


def cases_for_split(cases: Iterable[CaseT], split_map: Mapping[str, str], split: str) -> list[CaseT]:
    """The cases whose ``patient_id`` is in ``split`` (cases of unlisted patients are left out).

    Args:
        cases: any cases with a ``patient_id`` attribute.
        split_map: patient id -> split name, e.g. from :func:`load_split`.
        split: ``train``, ``val`` or ``test``.

    Returns:
        The cases of that part, in their given order.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return [c for c in cases if split_map.get(c.patient_id) == split]  # type: ignore[attr-defined]  # CaseT is any case type with a patient_id; the TypeVar has no bound


def summarize(cases: Sequence[VOICase], split_map: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Patients, nodules and malignant fractions (``Diagnosis_value``) per part, for logs and reports."""
    labels = patient_labels(cases)
    summary: dict[str, dict[str, float]] = {}
    for part in SPLITS:
        patients = [p for p, s in split_map.items() if s == part]
        nodules = cases_for_split(cases, split_map, part)
        summary[part] = {
            "patients": len(patients),
            "nodules": len(nodules),
            "malignant_patient_fraction": _mean([labels.get(p, 0) for p in patients]),
            "malignant_nodule_fraction": _mean([c.labels["ge2_readers_gt3"] or 0 for c in nodules]),
        }
    return summary


def _mean(values: Sequence[int]) -> float:
    return float(np.mean(values)) if values else 0.0


def _make_command(args: argparse.Namespace) -> None:
    listing = list_vois(args.data)
    if listing.excluded_test_patients:
        raise SystemExit(f"error: {args.data} holds whole-scan test patients "
                         f"{', '.join(listing.excluded_test_patients)}; they must not be in the VOI set")
    split = make_split(patient_labels(listing.cases), SplitConfig(seed=args.seed))
    write_split(split, args.out)
    for part, numbers in summarize(listing.cases, split).items():
        logger.info("%s: %d patients, %d nodules, malignant: %.3f of patients, %.3f of nodules", part,
                    numbers["patients"], numbers["nodules"], numbers["malignant_patient_fraction"],
                    numbers["malignant_nodule_fraction"])
    logger.info("wrote %s", args.out)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m lungai.data.splits make --data DIR --out FILE --seed 0``."""
    parser = argparse.ArgumentParser(prog="python -m lungai.data.splits", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="make a patient-level split of a lidc_vois-like folder")
    make.add_argument("--data", type=Path, required=True, help="folder with nodules.csv, image/, mask/")
    make.add_argument("--out", type=Path, required=True, help="split csv to write")
    make.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _make_command(args)


if __name__ == "__main__":
    main()
