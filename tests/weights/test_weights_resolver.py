"""Resolution order, verification and loading, with local sources only (downloads are off)."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from weights_helpers import NAME, REVISION, copy_model, entry_dict, flip_last_byte, write_manifest

from lungai.errors import WeightsError
from lungai.io.findings import WeightsInfo
from lungai.models.checkpoint import load_model as load_checkpoint
from lungai.models.checkpoint import save_model
from lungai.weights.manifest import Manifest, read_manifest
from lungai.weights.resolver import (
    Source,
    bundled_size,
    check,
    load_model,
    locate,
    resolve,
    weights_dir,
    weights_info,
)


def test_bundled_weights_resolve_and_load(manifest: Manifest, bundled: Path, tiny_model: Path) -> None:
    found = resolve(NAME, manifest)
    assert (found.source, found.folder) == (Source.BUNDLED, bundled)
    model = load_model(NAME, "cpu", manifest)
    reference = load_checkpoint(tiny_model)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert not model.training


def test_weights_dir_comes_before_bundled(manifest: Manifest, bundled: Path, tiny_model: Path) -> None:
    user = copy_model(tiny_model, weights_dir() / NAME)
    found = resolve(NAME, manifest)
    assert (found.source, found.folder) == (Source.WEIGHTS_DIR, user)


@pytest.mark.parametrize("filename", ["model.safetensors", "config.json"])
def test_tampered_file_is_refused_not_skipped(manifest: Manifest, bundled: Path, tiny_model: Path,
                                               filename: str) -> None:
    user = copy_model(tiny_model, weights_dir() / NAME)
    flip_last_byte(user / filename)
    with pytest.raises(WeightsError, match="failed verification: sha256") as info:
        load_model(NAME, "cpu", manifest)
    assert info.value.exit_code == 10
    assert str(user / filename) in info.value.message and "import the model again" in info.value.fix


def test_truncated_and_incomplete_copies_are_refused(manifest: Manifest, tiny_model: Path) -> None:
    user = copy_model(tiny_model, weights_dir() / NAME)
    (user / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes()[:-10])
    with pytest.raises(WeightsError, match="bytes, the manifest expects"):
        locate(NAME, manifest)
    (user / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="cannot read .*model.safetensors"):
        locate(NAME, manifest)


def test_bundled_tampered_file_says_reinstall(manifest: Manifest, bundled: Path) -> None:
    flip_last_byte(bundled / "model.safetensors")
    with pytest.raises(WeightsError, match="reinstall LungAI"):
        resolve(NAME, manifest)


def test_nothing_local_and_offline_gives_one_clear_message(manifest: Manifest) -> None:
    with pytest.raises(WeightsError) as info:
        resolve(NAME, manifest)
    message = info.value.message
    assert "\n" not in message
    assert f"weights for {NAME} are not installed" in message
    assert str(weights_dir()) in message and "Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert f"lungai weights import {NAME}.zip" in message
    assert locate(NAME, manifest) is None


def test_force_download_offline_says_so(manifest: Manifest, bundled: Path) -> None:
    with pytest.raises(WeightsError, match="cannot download nodule_cnn2d again: .*HF_HUB_OFFLINE=1"):
        resolve(NAME, manifest, force_download=True)


def test_download_can_be_refused(manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsError, match="downloading was not allowed"):
        resolve(NAME, manifest, download=False)


def test_check_reports_missing_verified_and_failed(manifest: Manifest, bundled: Path) -> None:
    verified = check(NAME, manifest)
    assert (verified.source, verified.folder, verified.verified) == (Source.BUNDLED, bundled, True)
    flip_last_byte(bundled / "config.json")
    failed = check(NAME, manifest)
    assert failed.source is Source.BUNDLED and not failed.verified and "sha256" in (failed.problem or "")
    (bundled / "config.json").unlink()
    (bundled / "model.safetensors").unlink()
    absent = check(NAME, manifest)
    assert (absent.source, absent.problem, absent.verified) == (None, None, False)


def test_unknown_model(manifest: Manifest) -> None:
    with pytest.raises(WeightsError, match="no model 'resunet3d' in the weights manifest"):
        resolve("resunet3d", manifest)


def test_float16_weights_load_into_the_float32_model(tmp_path: Path, tiny_model: Path) -> None:
    reference = load_checkpoint(tiny_model)
    save_model(load_checkpoint(tiny_model).half(), tmp_path / "package" / NAME)
    entry = entry_dict(tmp_path / "package" / NAME) | {"dtype": "float16"}
    manifest = read_manifest(write_manifest(tmp_path / "package" / "manifest.json", [entry]))
    model = load_model(NAME, "cpu", manifest)
    assert next(model.parameters()).dtype == torch.float32
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-2, atol=1e-3)


def test_weights_info_is_what_findings_record(manifest: Manifest) -> None:
    entry = manifest.get(NAME)
    info = weights_info(NAME, manifest)
    assert info == WeightsInfo(name=NAME, revision=REVISION, sha256=entry.files["model.safetensors"].sha256)
    assert json.loads(json.dumps(info.__dict__))["sha256"] == entry.sha256


def test_bundled_size_counts_bundled_model_folders(manifest: Manifest, bundled: Path) -> None:
    assert bundled_size(manifest) == sum(p.stat().st_size for p in bundled.iterdir())
    assert bundled_size(manifest) == manifest.get(NAME).size


def test_default_weights_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LUNGAI_WEIGHTS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("sys.platform", "linux")
    assert weights_dir() == tmp_path / "data" / "lungai" / "weights"
