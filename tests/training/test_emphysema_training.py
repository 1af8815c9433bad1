"""``lungai train / evaluate / compare emphysema`` on a tiny simulated set made from a real 4 mm thorax."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from shared_data import require

from lungai.data.emphysema_simset import SimulationSetConfig, make_simulation_set
from lungai.models.checkpoint import load_model
from lungai.preprocessing.emphysema_input import input_shape
from lungai.training.emphysema import EMPHYSEMA_MODELS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_csv(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 simulated volumes (3 positive) from cip_small/ct-64.nrrd: every split part holds both labels."""
    source = require(data_root / "cip_small" / "ct-64.nrrd")
    return make_simulation_set(SimulationSetConfig(sources=(source,), out=tmp_path_factory.mktemp("emph") / "sim",
                                                   n=10, seed=0))


@pytest.fixture(scope="module")
def runs(tiny_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of the five models (filled by the training test; the others train what is missing)."""
    root = tmp_path_factory.mktemp("runs")
    return {name: root / name for name in EMPHYSEMA_MODELS}


def _train(name: str, tiny_csv: Path, out: Path, capsys: pytest.CaptureFixture[str], epochs: int = 1) -> str:
    code, out_text, err = run_cli(["train", "emphysema", "--model", name, "--data", str(tiny_csv), "--out", str(out),
                                   "--size", "cpu", "--epochs", str(epochs), "--threads", "1", "--batch-size", "2"],
                                  capsys)
    assert code == 0, err
    return out_text


@pytest.mark.parametrize("name", EMPHYSEMA_MODELS)
def test_train_each_model_and_load_its_checkpoint(name: str, tiny_csv: Path, runs: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = _train(name, tiny_csv, runs[name], capsys)
    assert "saved in" in text
    metrics = json.loads((runs[name] / "metrics.json").read_text())
    assert metrics["task"] == "emphysema" and metrics["model"] == name
    assert metrics["input_shape"] == [35, 32, 32] and metrics["epochs_run"] == 1
    assert 0.0 <= metrics["val_auc"] <= 1.0 and 0.0 <= metrics["val_threshold"] <= 1.0 + 1e-9
    model = load_model(runs[name])
    assert input_shape(model.config) == (35, 32, 32)
    if name.startswith("mil_"):
        assert model.config.pooling == name.removeprefix("mil_")  # the CPU size keeps the name's pooling
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 35, 32, 32)).shape == (1, 1)


def test_training_resumes_where_it_stopped(tiny_csv: Path, runs: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = runs["mil_max"].parent / "resumed"
    _train("mil_max", tiny_csv, out, capsys, epochs=1)
    _train("mil_max", tiny_csv, out, capsys, epochs=2)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [record["epoch"] for record in history] == [0, 1]
    assert "resumed" in (out / "train.log").read_text()


def test_compare_and_evaluate_on_the_same_split(tiny_csv: Path, runs: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = [name for name, folder in runs.items() if not (folder / "model.safetensors").is_file()]
    for name in missing:
        _train(name, tiny_csv, runs[name], capsys)
    code, _, err = run_cli(["compare", "--task", "emphysema", *map(str, runs.values()), "--data", str(tiny_csv),
                            "--split", "test", "-o", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [m["name"] for m in result["methods"]] == [*EMPHYSEMA_MODELS, "laa950"]
    fingerprints = {json.loads((folder / "metrics.json").read_text())["split_fingerprint"] for folder in runs.values()}
    assert fingerprints == {result["split_fingerprint"]}
    table = (tmp_path / "cmp" / "compare.md").read_text()
    for text in ("kernels", "parameters", "AUC (95% CI)", "sensitivity", "specificity", "F1", "ConvLSTM scanner",
                 "LAA-950 alone", "0.83"):
        assert text in table
    assert (tmp_path / "cmp" / "cases.csv").read_text().count("\n") == result["n"] + 1
    code, _, err = run_cli(["evaluate", "emphysema", "--weights", str(runs["convlstm_scanner"]), "--data",
                            str(tiny_csv), "-o", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["methods"][0]["threshold_from"] == "val"


def test_emphysema_training_needs_a_csv(tiny_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "emphysema", "--model", "convlstm_scanner", "--data", str(tiny_csv.parent),
                            "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "weak-label CSV" in err and "Traceback" not in err
    code, _, err = run_cli(["train", "emphysema", "--model", "resnet50_3d", "--data", str(tiny_csv),
                            "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "not an emphysema model" in err


@pytest.mark.parametrize("option", [["--model-config", "{}"], ["--min-diameter-mm", "15"], ["--shift-fraction", "0.3"],
                                    ["--negatives", "scan.nrrd"], ["--negatives-per-scan", "5"]])
def test_options_of_the_nodule_models_are_refused_not_ignored(option: list[str], tiny_csv: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["train", "emphysema", "--model", "convlstm_scanner", "--data", str(tiny_csv),
                            "--out", str(tmp_path / "x"), *option], capsys)
    assert code == 2 and option[0] in err and "not supported for emphysema models" in err
    assert not (tmp_path / "x").exists()


def _manifest_with(folder: Path | None, package: Path) -> Path:
    """A weights manifest in ``package`` that bundles ``folder`` as convlstm_scanner (none when ``None``)."""
    import shutil

    from lungai.weights.manifest import MODEL_FILES, manifest_dict, parse_entry
    from lungai.weights.verify import file_record

    entries = []
    if folder is not None:
        bundled = package / "convlstm_scanner"
        bundled.mkdir(parents=True)
        for filename in MODEL_FILES:
            shutil.copyfile(folder / filename, bundled / filename)
        header = json.loads((bundled / "config.json").read_text())
        records = {filename: file_record(bundled / filename) for filename in MODEL_FILES}
        entries.append(parse_entry({
            "name": "convlstm_scanner", "architecture": header["architecture"], "config": header["config"],
            "dtype": "float32", "files": {f: {"sha256": r.sha256, "size": r.size} for f, r in records.items()},
            "repo_id": "lungai-test/convlstm_scanner", "revision": "0123456789abcdef0123456789abcdef01234567",
            "license": "apache-2.0", "training_data": ["simulated emphysema on ct-64"],
            "evaluation_data": "the tiny test split", "metrics": {"roc_auc": 0.5},
            "metrics_command": "lungai compare --task emphysema", "intended_use": "Testing the emphysema stage.",
            "limitations": ["Trained for one epoch on ten volumes."]}))
    package.mkdir(parents=True, exist_ok=True)
    (package / "manifest.json").write_text(json.dumps(manifest_dict(entries), indent=2))
    return package / "manifest.json"


def test_the_scanner_checkpoint_runs_in_lungai_run(data_root: Path, tiny_csv: Path, runs: dict[str, Path],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import SimpleITK as sitk

    from lungai import labels
    from lungai.pipeline.config import RunConfig
    from lungai.pipeline.runner import run_pipeline

    if not (runs["convlstm_scanner"] / "model.safetensors").is_file():
        _train("convlstm_scanner", tiny_csv, runs["convlstm_scanner"], capsys)
    scan = require(data_root / "cip_small" / "ct-64.nrrd")
    manifest = _manifest_with(runs["convlstm_scanner"], tmp_path / "package")
    result = run_pipeline(RunConfig(input=scan, output=tmp_path / "out", tasks=("emphysema",), device="cpu",
                                    manifest=manifest, emphysema_map=True))
    findings = json.loads((result.output / "findings.json").read_text())
    emphysema = findings["emphysema"]
    assert 0.0 <= emphysema["model_probability"] <= 1.0
    sha = json.loads(manifest.read_text())["models"][0]["files"]["model.safetensors"]["sha256"]
    assert emphysema["model"] == {"name": "convlstm_scanner", "revision": "0123456789abcdef0123456789abcdef01234567",
                                  "sha256": sha}
    assert emphysema["densitometry"]["total"]["laa_950_percent"] > 0
    label_map = sitk.GetArrayFromImage(sitk.ReadImage(str(next(result.output.glob("*_labels.nii.gz")))))
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(scan)))
    low = label_map == labels.LOW_ATTENUATION.value
    assert low.any() and (hu[low] < -950).all()
    assert np.count_nonzero(low) == pytest.approx(np.count_nonzero(label_map > 0)
                                                  * emphysema["densitometry"]["total"]["laa_950_percent"] / 100,
                                                  rel=0.01)

    without = run_pipeline(RunConfig(input=scan, output=tmp_path / "plain", tasks=("emphysema",), device="cpu",
                                     manifest=_manifest_with(None, tmp_path / "empty")))
    plain = json.loads((without.output / "findings.json").read_text())
    assert plain["emphysema"]["model_probability"] is None and plain["emphysema"]["model"] is None
    assert plain["emphysema"]["densitometry"]["total"]["laa_950_percent"] == emphysema["densitometry"]["total"][
        "laa_950_percent"]
    # without the scanner in the manifest (and without --emphysema-probability) densitometry is the whole result
    assert not any("convlstm_scanner" in warning for warning in plain["warnings"])
    plain_map = sitk.GetArrayFromImage(sitk.ReadImage(str(next(without.output.glob("*_labels.nii.gz")))))
    assert not (plain_map == labels.LOW_ATTENUATION.value).any()
