"""Every weights test runs against its own empty weights folder and Hugging Face cache, offline."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
from weights_helpers import copy_model, entry_dict, write_manifest

from lungai.weights.manifest import Manifest, read_manifest


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LUNGAI_WEIGHTS_DIR`` and the Hugging Face cache point into ``tmp_path``; downloads are off."""
    monkeypatch.setenv("LUNGAI_WEIGHTS_DIR", str(tmp_path / "user_weights"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, very small ``nodule_cnn2d`` checkpoint (config.json + model.safetensors)."""
    from lungai.models.checkpoint import save_model
    from lungai.models.nodule_cnn2d import NoduleCNN2dConfig
    from lungai.models.registry import build_model

    config = NoduleCNN2dConfig(filters=(2, 2, 2), hidden=4, feature_grid=(1, 1))
    return save_model(build_model("nodule_cnn2d", config), tmp_path_factory.mktemp("tiny") / "nodule_cnn2d")


@pytest.fixture
def manifest_path(tmp_path: Path, tiny_model: Path) -> Path:
    """A manifest listing the tiny model; its folder (the 'package') bundles nothing yet."""
    return write_manifest(tmp_path / "package" / "manifest.json", [entry_dict(tiny_model)])


@pytest.fixture
def manifest(manifest_path: Path) -> Manifest:
    """The parsed test manifest."""
    return read_manifest(manifest_path)


@pytest.fixture
def bundled(manifest: Manifest, tiny_model: Path) -> Path:
    """The tiny model bundled beside the test manifest."""
    assert manifest.bundled_dir is not None
    return copy_model(tiny_model, manifest.bundled_dir / "nodule_cnn2d")
