"""The real ``huggingface_hub`` code path, offline, in a fresh interpreter per case.

``huggingface_hub`` reads ``HF_HOME`` and ``HF_HUB_OFFLINE`` when it is imported, so each
case runs in a subprocess whose environment is set before that import. The cache is built
in the layout ``hf_hub_download`` itself writes; nothing is ever downloaded for real.
"""

from __future__ import annotations

import socket
from pathlib import Path

from weights_helpers import (
    NAME,
    OTHER_REVISION,
    REVISION,
    FakeHub,
    copy_model,
    flip_last_byte,
    populate_hf_cache,
    resolve_in_subprocess,
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HF_HOME": str(tmp_path / "hf"), "LUNGAI_WEIGHTS_DIR": str(tmp_path / "user_weights"), **extra}


def test_pinned_revision_resolves_from_the_cache(tmp_path: Path, manifest_path: Path, tiny_model: Path) -> None:
    hub = tmp_path / "hf" / "hub"
    snapshot = populate_hf_cache(hub, tiny_model)
    # refs/main points at a newer commit whose files would fail verification: only the pin counts.
    other = copy_model(tiny_model, tmp_path / "other")
    flip_last_byte(other / "model.safetensors")
    populate_hf_cache(hub, other, revision=OTHER_REVISION)
    result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result == {"source": "hf_cache", "folder": str(snapshot), "cache": str(hub)}


def test_tampered_cache_file_is_refused(tmp_path: Path, manifest_path: Path, tiny_model: Path) -> None:
    snapshot = populate_hf_cache(tmp_path / "hf" / "hub", tiny_model)
    flip_last_byte(snapshot / "model.safetensors")
    result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result["exit_code"] == 10
    assert "failed verification: sha256" in result["error"]
    assert f"lungai weights fetch {NAME} --force" in result["error"]


def test_missing_file_offline_gives_the_clear_message(tmp_path: Path, manifest_path: Path, tiny_model: Path) -> None:
    snapshot = populate_hf_cache(tmp_path / "hf" / "hub", tiny_model)
    (snapshot / "config.json").unlink()  # half a model in the cache is no model
    result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result["exit_code"] == 10
    assert f"weights for {NAME} are not installed" in result["error"]
    assert str(tmp_path / "hf" / "hub") in result["error"]
    assert "HF_HUB_OFFLINE=1" in result["error"]
    assert f"lungai weights import {NAME}.zip" in result["error"]


def test_no_network_gives_the_clear_message(tmp_path: Path, manifest_path: Path) -> None:
    with socket.socket() as probe:  # a local port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_ENDPOINT=endpoint))
    assert result["exit_code"] == 10
    assert f"downloading lungai-test/nodule_cnn2d at {REVISION[:12]} failed" in result["error"]
    assert "the Hub cannot be reached" in result["error"]
    assert f"lungai weights import {NAME}.zip" in result["error"]


def _served(tiny_model: Path) -> dict[str, bytes]:
    return {name: (tiny_model / name).read_bytes() for name in ("config.json", "model.safetensors")}


def test_download_at_the_pinned_revision_then_offline_from_the_cache(tmp_path: Path, manifest_path: Path,
                                                                     tiny_model: Path) -> None:
    with FakeHub(_served(tiny_model)) as hub:
        downloaded = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_ENDPOINT=hub.endpoint))
    snapshot = tmp_path / "hf" / "hub" / "models--lungai-test--nodule_cnn2d" / "snapshots" / REVISION
    assert downloaded["source"] == "hf_download" and downloaded["folder"] == str(snapshot)
    assert ("GET", f"/lungai-test/nodule_cnn2d/resolve/{REVISION}/model.safetensors") in hub.requests
    offline = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert (offline["source"], offline["folder"]) == ("hf_cache", str(snapshot))


def test_downloaded_file_that_differs_from_the_manifest_is_refused(tmp_path: Path, manifest_path: Path,
                                                                   tiny_model: Path) -> None:
    served = _served(tiny_model)
    served["model.safetensors"] = served["model.safetensors"][:-1] + b"!"
    with FakeHub(served) as hub:
        result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_ENDPOINT=hub.endpoint))
    assert result["exit_code"] == 10 and "failed verification: sha256" in result["error"]
    assert "does not match this LungAI version" in result["error"]


def test_force_download_replaces_a_damaged_cached_copy(tmp_path: Path, manifest_path: Path, tiny_model: Path) -> None:
    snapshot = populate_hf_cache(tmp_path / "hf" / "hub", tiny_model)
    flip_last_byte(snapshot / "model.safetensors")
    with FakeHub(_served(tiny_model)) as hub:
        result = resolve_in_subprocess(manifest_path, _env(tmp_path, HF_ENDPOINT=hub.endpoint), force=True)
    assert (result.get("source"), result.get("folder")) == ("hf_download", str(snapshot)), result
    assert resolve_in_subprocess(manifest_path, _env(tmp_path, HF_HUB_OFFLINE="1"))["source"] == "hf_cache"
