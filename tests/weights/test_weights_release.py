"""The release steps: run folder -> float16 bundled files -> manifest and model card that verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from weights_helpers import NAME, entry_dict

from lungai.errors import WeightsError
from lungai.models.checkpoint import load_model
from lungai.weights import hub
from lungai.weights.manifest import parse_entry, read_manifest
from lungai.weights.release import convert, main, read_specs, write_manifest
from lungai.weights.resolver import Source, locate, resolve, weights_info


def _release_file(tmp_path: Path, run: Path, metrics_file: Path) -> Path:
    spec = {"name": NAME, "run": str(run), "dtype": "float16", "repo_id": "lungai/nodule_cnn2d-lidc",
            "license": "apache-2.0", "training_data": ["LIDC-IDRI (train split)"],
            "evaluation_data": "a tiny test", "metrics_file": str(metrics_file),
            "metrics": ["auc", "test.cpm", "methods.1.auc"],
            "metrics_command": "lungai evaluate malignancy --weights weights/nodule_cnn2d ...",
            "intended_use": "Testing releases.", "limitations": ["Random weights."],
            "inference": {"threshold": 0.4}}
    path = tmp_path / "releases.json"
    path.write_text(json.dumps({"models": [spec]}))
    return path


def test_convert_casts_to_float16_deterministically_and_loads(tmp_path: Path, tiny_model: Path) -> None:
    spec = read_specs(_release_file(tmp_path, tiny_model, tmp_path / "metrics.json"))[0]
    folder = convert(spec, tmp_path / "package")
    first = (folder / "model.safetensors").read_bytes()
    assert {t.dtype for t in load_file(str(folder / "model.safetensors")).values() if t.is_floating_point()} \
        == {torch.float16}
    assert convert(spec, tmp_path / "package").joinpath("model.safetensors").read_bytes() == first
    assert json.loads((folder / "config.json").read_text())["inference"] == {"threshold": 0.4}
    original, released = load_model(tiny_model), load_model(folder)
    x = torch.rand(2, 1, 124, 124)
    with torch.no_grad():
        assert torch.allclose(original(x), released(x), atol=1e-2)


def test_manifest_needs_the_evaluation_then_verifies(tmp_path: Path, tiny_model: Path) -> None:
    package = tmp_path / "package"
    metrics_file = tmp_path / "metrics.json"
    specs = read_specs(_release_file(tmp_path, tiny_model, metrics_file))
    convert(specs[0], package)
    with pytest.raises(WeightsError, match="no evaluation of the released files"):
        write_manifest(specs, package)
    metrics_file.write_text(json.dumps({"auc": 0.8765432, "dice": None, "test": {"cpm": 0.5},
                                        "methods": [{"auc": 0.1}, {"auc": 0.9}]}))
    manifest = read_manifest(write_manifest(specs, package))
    entry = manifest.get(NAME)
    assert (entry.metrics == {"auc": 0.8765, "test_cpm": 0.5, "methods_1_auc": 0.9} and entry.dtype == "float16"
            and not entry.published)
    resolved = locate(NAME, manifest)
    assert resolved is not None and resolved.source is Source.BUNDLED
    assert "not on the Hugging Face Hub yet" in (package / NAME / "README.md").read_text()
    assert weights_info(NAME, manifest).revision == "unpublished"


def test_cli_reports_a_missing_run_as_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    release = _release_file(tmp_path, tmp_path / "no_run", tmp_path / "metrics.json")
    assert main(["convert", str(release), "--bundled-dir", str(tmp_path / "package")]) == WeightsError.exit_code
    assert "has no config.json" in caplog.text


def test_unpublished_model_is_never_looked_up_on_the_hub(tmp_path: Path, tiny_model: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    entry = parse_entry({**entry_dict(tiny_model), "revision": None})
    assert hub.cached_folder(entry) is None
    with pytest.raises(hub.HubUnavailableError, match="not published"):
        hub.download_folder(entry)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    from lungai.weights.manifest import Manifest

    with pytest.raises(WeightsError, match="not published on the Hugging Face Hub"):
        resolve(NAME, Manifest(models={NAME: entry}))


def test_manifest_only_rereleases_one_model_and_keeps_the_others_as_recorded(tmp_path: Path,
                                                                            tiny_model: Path) -> None:
    package = tmp_path / "package"
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"auc": 0.8, "test": {"cpm": 0.5}, "methods": [{"auc": 0.1}, {"auc": 0.9}]}))
    first = json.loads(_release_file(tmp_path, tiny_model, metrics_file).read_text())["models"][0]
    other = {**first, "name": "other_model", "run": str(tmp_path / "gone"), "metrics_file": str(tmp_path / "gone.json")}
    release_file = tmp_path / "both.json"
    release_file.write_text(json.dumps({"models": [first, {**first, "name": "other_model"}]}))
    specs = read_specs(release_file)
    for spec in specs:
        convert(spec, package)
    recorded = read_manifest(write_manifest(specs, package)).get("other_model")
    # the other model's run and evaluation are gone; --only NAME still re-releases NAME
    release_file.write_text(json.dumps({"models": [first, other]}))
    metrics_file.write_text(json.dumps({"auc": 0.9, "test": {"cpm": 0.6}, "methods": [{"auc": 0.1}, {"auc": 0.7}]}))
    with pytest.raises(WeightsError, match="no evaluation of the released files"):
        write_manifest(read_specs(release_file), package)
    manifest = read_manifest(write_manifest(read_specs(release_file), package, only=[NAME]))
    assert list(manifest.models) == [NAME, "other_model"]
    assert manifest.get(NAME).metrics == {"auc": 0.9, "test_cpm": 0.6, "methods_1_auc": 0.7}
    assert manifest.get("other_model") == recorded
    (package / "manifest.json").write_text(json.dumps({"manifest_version": 1, "models": []}))
    with pytest.raises(WeightsError, match="other_model is not in"):
        write_manifest(read_specs(release_file), package, only=[NAME])
