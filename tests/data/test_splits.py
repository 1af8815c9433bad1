"""Patient-level splits: the committed LIDC VOI split file and the code that makes it."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from shared_data import REPO_ROOT, require

from lungai.data.holdout import WHOLE_SCAN_TEST_PATIENTS
from lungai.data.lidc_vois import list_vois
from lungai.data.splits import (
    SPLITS,
    SplitConfig,
    cases_for_split,
    load_split,
    main,
    make_split,
    patient_labels,
    summarize,
    write_split,
)
from lungai.errors import InputNotFoundError, UnreadableInputError

COMMITTED = REPO_ROOT / "core" / "data" / "splits" / "lidc_vois_split.csv"


@pytest.fixture(scope="module")
def real_cases(data_root: Path) -> list:
    return list_vois(require(data_root / "lidc_vois")).cases


@pytest.fixture(scope="module")
def real_rows(data_root: Path) -> list[dict[str, str]]:
    with require(data_root / "lidc_vois" / "nodules.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_packaged_split_is_the_committed_file() -> None:
    assert load_split() == load_split(COMMITTED)
    with COMMITTED.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["patient_id", "split"]
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])


def test_split_covers_every_patient_once(real_rows: list[dict[str, str]]) -> None:
    with COMMITTED.open(newline="") as handle:
        listed = [row["patient_id"] for row in csv.DictReader(handle)]
    assert len(listed) == len(set(listed)), "a patient is in two parts"
    assert set(listed) == {row["patient_id"] for row in real_rows}
    assert not WHOLE_SCAN_TEST_PATIENTS & set(listed)
    assert not WHOLE_SCAN_TEST_PATIENTS & {row["patient_id"] for row in real_rows}, \
        "whole-scan test patients must not be in lidc_vois"


def test_split_proportions_and_stratification(real_cases: list) -> None:
    split = load_split()
    counts = Counter(split.values())
    for part, fraction in zip(SPLITS, SplitConfig().fractions):
        assert counts[part] / len(split) == pytest.approx(fraction, abs=0.02)
    labels = patient_labels(real_cases)
    overall = np.mean(list(labels.values()))
    summary = summarize(real_cases, split)
    for part in SPLITS:
        assert summary[part]["malignant_patient_fraction"] == pytest.approx(overall, abs=0.03)
        assert summary[part]["malignant_nodule_fraction"] == pytest.approx(0.32, abs=0.08)
    assert sum(s["nodules"] for s in summary.values()) == len(real_cases)


def test_committed_split_is_reproducible(real_cases: list) -> None:
    assert make_split(patient_labels(real_cases), SplitConfig(seed=0)) == load_split()
    assert make_split(patient_labels(real_cases), SplitConfig(seed=1)) != load_split()


def test_make_split_refuses_test_patients_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="LIDC-IDRI-0003"):
        make_split({"LIDC-IDRI-0003": 1, "LIDC-IDRI-0100": 0})
    with pytest.raises(ValueError, match="fractions"):
        make_split({"LIDC-IDRI-0100": 0}, SplitConfig(fractions=(0.8, 0.15, 0.15)))


def test_make_split_stratifies_small_sets() -> None:
    labels = {f"P{i:03d}": int(i < 20) for i in range(100)}
    split = make_split(labels)
    for part, size, malignant in (("train", 70, 14), ("val", 15, 3), ("test", 15, 3)):
        members = [p for p, s in split.items() if s == part]
        assert len(members) == size and sum(labels[p] for p in members) == malignant


@dataclass(frozen=True)
class _Case:
    patient_id: str
    name: str


def test_cases_for_split() -> None:
    cases = [_Case("A", "a1"), _Case("B", "b1"), _Case("A", "a2"), _Case("C", "c1")]
    split = {"A": "train", "B": "test"}
    assert [c.name for c in cases_for_split(cases, split, "train")] == ["a1", "a2"]
    assert [c.name for c in cases_for_split(cases, split, "test")] == ["b1"]
    assert cases_for_split(cases, split, "val") == []
    with pytest.raises(ValueError):
        cases_for_split(cases, split, "validation")


def test_split_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    write_split({"B": "val", "A": "train"}, path)
    assert path.read_text() == "patient_id,split\nA,train\nB,val\n"
    assert load_split(path) == {"A": "train", "B": "val"}
    with pytest.raises(InputNotFoundError):
        load_split(tmp_path / "absent.csv")
    for text in ("patient,part\nA,train\n", "patient_id,split\nA,train\nA,val\n", "patient_id,split\nA,dev\n",
                 "patient_id,split\nLIDC-IDRI-0001,test\n"):
        path.write_text(text)
        with pytest.raises(UnreadableInputError):
            load_split(path)


def test_make_command(tmp_path: Path) -> None:
    root = tmp_path / "vois"
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    columns = "patient_id,nodule_id,diameter_mm,Diagnosis_value,Malignancy_value,reader_malignancy\n"
    rows = "".join(f"LIDC-IDRI-{i:04d},1,5.0,{int(i % 3 == 0)},3,\n" for i in range(10, 30))
    (root / "nodules.csv").write_text(columns + rows)
    for i in range(10, 30):
        for folder in ("image", "mask"):
            (root / folder / f"LIDC-IDRI-{i:04d}_R_1.nii.gz").touch()  # listing never reads them
    out = tmp_path / "split.csv"
    main(["make", "--data", str(root), "--out", str(out), "--seed", "0"])
    first = out.read_text()
    main(["make", "--data", str(root), "--out", str(out), "--seed", "0"])
    assert out.read_text() == first
    assert Counter(load_split(out).values()) == {"train": 14, "val": 3, "test": 3}
