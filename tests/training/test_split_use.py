"""The committed split is patient-disjoint, and training reads only its train and val parts."""

from __future__ import annotations

from pathlib import Path

from shared_data import require

from lungai.data.holdout import WHOLE_SCAN_TEST_PATIENTS
from lungai.data.splits import load_split
from lungai.training.recipes import make_config
from lungai.training.trainer import _split_cases


def test_split_parts_are_patient_disjoint() -> None:
    split = load_split()
    parts = {part: {p for p, s in split.items() if s == part} for part in ("train", "val", "test")}
    assert parts["train"].isdisjoint(parts["val"])
    assert parts["train"].isdisjoint(parts["test"])
    assert parts["val"].isdisjoint(parts["test"])
    assert not set(split) & set(WHOLE_SCAN_TEST_PATIENTS)


def test_training_sees_no_test_patient(data_root: Path, tmp_path: Path) -> None:
    vois = require(data_root / "lidc_vois" / "nodules.csv").parent
    split = load_split()
    parts = _split_cases(make_config("malignancy", "nodule_cnn2d", vois, tmp_path))
    for part, cases in parts.items():
        assert {split[c.patient_id] for c in cases} == {part}
