"""Tiny real weights, manifests and Hugging Face caches for the weights tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lungai.weights.manifest import MODEL_FILES, manifest_dict, parse_entry
from lungai.weights.verify import file_record

NAME = "nodule_cnn2d"
REPO_ID = "lungai-test/nodule_cnn2d"
REVISION = "0123456789abcdef0123456789abcdef01234567"
OTHER_REVISION = "fedcba9876543210fedcba9876543210fedcba98"


def entry_dict(folder: Path, name: str = NAME, revision: str = REVISION) -> dict[str, Any]:
    """A complete manifest entry for the model files in ``folder``."""
    header = json.loads((folder / "config.json").read_text())
    records = {filename: file_record(folder / filename) for filename in MODEL_FILES}
    return {
        "name": name,
        "architecture": header["architecture"],
        "config": header["config"],
        "dtype": "float32",
        "files": {filename: {"sha256": r.sha256, "size": r.size} for filename, r in records.items()},
        "repo_id": REPO_ID,
        "revision": revision,
        "license": "apache-2.0",
        "training_data": ["LIDC-IDRI"],
        "evaluation_data": "a tiny test split",
        "metrics": {"roc_auc": 0.87, "sensitivity": 0.86},
        "metrics_command": "lungai-evaluate nodule_cnn2d --split test",
        "intended_use": "Testing the weights infrastructure.",
        "limitations": ["Random weights."],
    }


def write_manifest(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write a manifest file (its folder is where bundled models live)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest_dict([parse_entry(e) for e in entries]), indent=2))
    return path


def copy_model(source: Path, folder: Path) -> Path:
    """Copy the two model files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for filename in MODEL_FILES:
        shutil.copyfile(source / filename, folder / filename)
    return folder


def flip_last_byte(path: Path) -> None:
    """Tamper with a file without changing its size (breaks the real file, not a symlink)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    real = path.resolve()
    real.unlink()
    real.write_bytes(bytes(data))


def populate_hf_cache(hub_dir: Path, source: Path, repo_id: str = REPO_ID, revision: str = REVISION) -> Path:
    """Lay out the model files as ``hf_hub_download`` leaves them in the cache.

    ``models--{org}--{name}/blobs/<etag>`` holds the bytes (etag = sha256 for LFS files such as
    safetensors, the git blob sha1 for small files), ``snapshots/<commit>/<file>`` are relative
    symbolic links to the blobs and ``refs/main`` names a commit.

    Returns:
        The snapshot folder of ``revision``.
    """
    repo = hub_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot.mkdir(parents=True)
    for filename in MODEL_FILES:
        data = (source / filename).read_bytes()
        if filename.endswith(".safetensors"):
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / etag).write_bytes(data)
        (snapshot / filename).symlink_to(Path("..") / ".." / "blobs" / etag)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


RESOLVE_SCRIPT = """
import json, sys, time
time.sleep = lambda seconds: None  # no back-off between retries of refused connections (23 s)
from huggingface_hub import constants
from lungai.errors import LungAIError
from lungai.weights.manifest import read_manifest
from lungai.weights.resolver import resolve
try:
    found = resolve(sys.argv[2], read_manifest(sys.argv[1]), force_download=sys.argv[3] == "force")
    print(json.dumps({"source": found.source.value, "folder": str(found.folder), "cache": constants.HF_HUB_CACHE}))
except LungAIError as exc:
    print(json.dumps({"error": exc.message, "exit_code": exc.exit_code}))
"""


def resolve_in_subprocess(manifest: Path, env: dict[str, str], name: str = NAME, force: bool = False,
                          timeout: float = 60) -> dict[str, Any]:
    """Resolve a model in a fresh interpreter, so ``huggingface_hub`` reads ``env`` at import.

    Args:
        manifest: the manifest file.
        env: variables added to a copy of the environment without any ``HF_*`` / ``LUNGAI_*``.
        name: the model.
        force: pass ``force_download=True``.
        timeout: seconds before the subprocess is killed.

    Returns:
        ``source``, ``folder`` and ``cache`` on success; ``error`` and ``exit_code`` otherwise.
    """
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE_", "LUNGAI_")) and k not in ("XDG_CACHE_HOME",)}
    result = subprocess.run([sys.executable, "-c", RESOLVE_SCRIPT, str(manifest), name,
                             "force" if force else ""],
                            env={**clean, **env}, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


class FakeHub:
    """A local HTTP server that answers ``hf_hub_download``'s HEAD and GET for one repo at one commit.

    Args:
        files: file name -> bytes served.
        repo_id: the repository.
        revision: the commit it serves (as ``X-Repo-Commit``).

    Attributes:
        requests: ``(method, path)`` of every request received.
    """

    def __init__(self, files: dict[str, bytes], repo_id: str = REPO_ID, revision: str = REVISION) -> None:
        self.files = files
        self.prefix = f"/{repo_id}/resolve/{revision}/"
        self.revision = revision
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The URL to use as ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                name = self.path[len(hub.prefix):] if self.path.startswith(hub.prefix) else None
                if name not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[name]
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.revision)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
