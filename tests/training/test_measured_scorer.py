"""The measured scorer: coefficients placed exactly, trained and evaluated end to end from a feature cache.

The end-to-end test copies a few real LIDC VOIs (chosen so that every class of every head
occurs in each split) and writes the feature cache for them with synthetic features that carry
the labels, so no VOI is segmented: the fitting, the validation choices, the checkpoint and
the evaluation run for real on numbers whose answer is known.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shared_data import require

from lungai.cli.main import cli
from lungai.data.lidc_vois import list_vois
from lungai.data.splits import cases_for_split, load_split
from lungai.data.voi_features import _write_cache, cache_key, cache_path
from lungai.evaluation.logistic import fit_logistic
from lungai.models.checkpoint import load_model, save_model
from lungai.models.measured_nodule import MeasuredNodule, MeasuredNoduleConfig, head_rows
from lungai.preprocessing.nodule_features import FEATURE_NAMES
from lungai.training.measured import FEATURE_SETS, _place, head_labels
from lungai.weights.resolver import resolve


def test_fits_on_feature_subsets_are_reproduced_exactly_by_the_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURE_NAMES))) * rng.uniform(0.1, 50, len(FEATURE_NAMES)) + 10
    binary, three = (x[:, 0] > 10).astype(int), np.digitize(x[:, 3], np.percentile(x[:, 3], [33, 66]))
    config = MeasuredNoduleConfig(features=FEATURE_NAMES, heads=("a", "b"), classes=(2, 3),
                                  feature_sets=("size", "size + HU"))
    model = MeasuredNodule(config)
    with torch.no_grad():
        model.mean.copy_(torch.as_tensor(x.mean(0)))
        model.scale.copy_(torch.as_tensor(x.std(0)))
    fits = {"a": fit_logistic(x[:50][:, :3], binary[:50]), "b": fit_logistic(x[50:][:, :11], three[50:], 3)}
    for head, names in (("a", FEATURE_SETS["size"]), ("b", FEATURE_SETS["size + HU"])):
        _place(model, head_rows(config)[head], fits[head], names)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    with torch.no_grad():
        out = loaded.probabilities(torch.as_tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(out["a"].numpy(), fits["a"].predict(x[:, :3]), atol=1e-4)
    np.testing.assert_allclose(out["b"].numpy(), fits["b"].predict(x[:, :11]), atol=1e-4)


def _covering_cases(cases: list, per_split: int) -> list:
    """Cases that give every class of every head at least two members, then the first others."""
    chosen: list = []
    for head in ("malignancy", "texture", "calcification", "spiculation", "lobulation", "ill_defined_margin"):
        labels = head_labels(cases, head, "ge2_readers_gt3")
        for value in np.unique(labels[labels >= 0]):
            chosen += [c for c, v in zip(cases, labels) if v == value and c not in chosen][:2]
    return chosen + [c for c in cases if c not in chosen][:max(0, per_split - len(chosen))]


@pytest.fixture(scope="module")
def small_vois(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A lidc_vois-like folder of covering cases and a feature cache for them (synthetic features)."""
    vois = require(data_root / "lidc_vois")
    out, cache = tmp_path_factory.mktemp("vois"), tmp_path_factory.mktemp("features")
    everything = list_vois(vois).cases
    chosen = [c for part in ("train", "val", "test")
              for c in _covering_cases(cases_for_split(everything, load_split(), part), 24)]
    for sub in ("image", "mask"):
        (out / sub).mkdir()
        for case in chosen:
            shutil.copyfile(vois / sub / f"{case.case_id}.nii.gz", out / sub / f"{case.case_id}.nii.gz")
    ids = {c.case_id for c in chosen}
    with (vois / "nodules.csv").open(newline="") as source, (out / "nodules.csv").open("w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if f"{r['patient_id']}_R_{r['nodule_id']}" in ids)
    rng = np.random.default_rng(0)
    rows = {}
    for case in chosen:
        row = rng.normal(size=len(FEATURE_NAMES))
        row[0] += 3 * head_labels([case], "malignancy", "ge2_readers_gt3")[0]  # log volume carries malignancy
        row[FEATURE_NAMES.index("calcified_fraction")] += 3 * head_labels([case], "calcification", "")[0]
        row[FEATURE_NAMES.index("solid_fraction")] += 2 * head_labels([case], "texture", "")[0]
        rows[cache_key(case)] = row
    _write_cache(cache_path(resolve("resunet3d").entry.sha256, cache), rows)
    return out, cache


def test_train_then_evaluate_from_the_feature_cache(small_vois: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vois, cache = small_vois
    monkeypatch.setenv("LUNGAI_FEATURE_CACHE", str(cache))
    run = tmp_path / "measured"
    trained = CliRunner().invoke(cli, ["train", "malignancy", "--model", "measured_nodule", "--data", str(vois),
                                       "--out", str(run), "--threads", "1"])
    assert trained.exit_code == 0, trained.output
    selection = json.loads((run / "selection.json").read_text())
    assert set(selection["heads"]) == {"malignancy", "texture", "calcification", "spiculation", "lobulation",
                                       "ill_defined_margin"}
    assert "size" in selection["heads"]["malignancy"]["feature_set"]
    assert selection["heads"]["malignancy"]["validation_scores"][selection["heads"]["malignancy"]["feature_set"]] > 0.9
    header = json.loads((run / "config.json").read_text())
    assert header["architecture"] == "MeasuredNodule" and 0 < header["inference"]["calcified_category1_from"] < 1
    evaluated = CliRunner().invoke(cli, ["evaluate", "malignancy", "--weights", str(run), "--data", str(vois),
                                         "--split", "test", "-o", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["model"] == "measured_nodule" and metrics["auc"] > 0.8
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= 1
    assert metrics["characteristics"]["calcification"]["auc"] > 0.8
    assert "radiologists' suspicion on LIDC" in (tmp_path / "eval" / "report.md").read_text()
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 0
