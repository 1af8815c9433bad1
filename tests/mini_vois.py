"""A small lidc_vois-like folder (the first few cases of each split) for tests that run a model on every case."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from lungai.data.lidc_vois import list_vois
from lungai.data.splits import cases_for_split, load_split


def mini_vois(vois: Path, out: Path, per_split: int, parts: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """Copy the first ``per_split`` cases of each split in ``parts`` (images, masks, their nodules.csv rows)."""
    split_map = load_split()
    cases = list_vois(vois).cases
    chosen = {c.case_id for part in parts for c in cases_for_split(cases, split_map, part)[:per_split]}
    for sub in ("image", "mask"):
        (out / sub).mkdir(parents=True)
        for case in chosen:
            shutil.copyfile(vois / sub / f"{case}.nii.gz", out / sub / f"{case}.nii.gz")
    with (vois / "nodules.csv").open(newline="") as source, (out / "nodules.csv").open("w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if f"{r['patient_id']}_R_{r['nodule_id']}" in chosen)
    return out
