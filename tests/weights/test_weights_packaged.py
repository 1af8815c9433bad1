"""The weights installed with the package: manifest valid, bundled files verified, at most 50 MB."""

from __future__ import annotations

import json

from lungai.weights.cards import CARD_FILE, NOT_FOR_CLINICAL_USE
from lungai.weights.manifest import MODEL_FILES, load_manifest, packaged_dir, read_manifest
from lungai.weights.resolver import BUNDLED_LIMIT_BYTES, bundled_size, check


def test_manifest_parses() -> None:
    manifest = read_manifest()
    assert manifest.bundled_dir == packaged_dir()
    assert [entry["name"] for entry in load_manifest()["models"]] == list(manifest.models)


def test_bundled_size_is_within_the_limit() -> None:
    everything = sum(p.stat().st_size for p in packaged_dir().glob("*/*") if "__pycache__" not in p.parts)
    assert bundled_size() <= everything <= BUNDLED_LIMIT_BYTES


def test_every_bundled_folder_is_a_verified_manifest_model_with_a_card() -> None:
    manifest = read_manifest()
    folders = [p for p in packaged_dir().iterdir() if p.is_dir() and p.name != "__pycache__"]
    for folder in folders:
        assert folder.name in manifest.models, f"{folder} is not in manifest.json"
        assert sorted(p.name for p in folder.iterdir()) == sorted([*MODEL_FILES, CARD_FILE])
        entry = manifest.get(folder.name)
        header = json.loads((folder / "config.json").read_text())
        assert (header["architecture"], header["config"]) == (entry.architecture, entry.config)
        card = (folder / CARD_FILE).read_text()
        assert NOT_FOR_CLINICAL_USE in card and entry.sha256 in card
        status = check(folder.name, manifest)
        assert status.verified, status.problem


def test_no_pickled_checkpoints_are_shipped() -> None:
    pickled = [p for p in packaged_dir().rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".pkl")]
    assert pickled == []
