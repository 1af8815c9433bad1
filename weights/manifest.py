"""Reading ``weights/manifest.json``, the list of shipped model weights and their checksums.

The manifest is the trust anchor of LungAI's weights: a file is used only if its size and
sha256 match the manifest entry of its model, wherever it was found. The format is described
in ``docs/weights.md``; :func:`parse_manifest` checks it and turns it into
:class:`Manifest` / :class:`ModelEntry` objects.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lungai.errors import WeightsError

MANIFEST_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: The files of every model, in the order they are checked and fetched. Safetensors only:
#: nothing that would need unpickling can be listed.
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
DTYPES = ("float32", "float16", "bfloat16")
#: What users see instead of a revision for weights not yet on the Hub.
UNPUBLISHED = "unpublished"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class FileRecord:
    """Size and checksum of one file of a model.

    Attributes:
        sha256: lowercase hex sha256 of the file's bytes.
        size: size in bytes.
    """

    sha256: str
    size: int


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest.

    Attributes:
        name: the registry name (``convlstm_scanner``, ...); also the folder name of its files.
        architecture: the model class name, as ``config.json`` records it.
        config: the architecture's full configuration, as ``config.json`` records it.
        dtype: the floating-point type the weights are stored in.
        files: :data:`MODEL_FILES` with their checksums.
        repo_id: the Hugging Face model repository.
        revision: the pinned 40-hex commit of that repository; ``None`` while the weights are
            not yet published on the Hub (then only local sources can provide them).
        license: licence identifier of the weights (Hugging Face ``license`` value).
        training_data: the data sets the weights were trained on.
        evaluation_data: what the metrics were measured on.
        metrics: the evaluation numbers, as in ``docs/results.md``.
        metrics_command: the command that produced the metrics.
        intended_use: what the model is for, for the model card.
        limitations: known limitations, for the model card.
    """

    name: str
    architecture: str
    config: dict[str, Any]
    dtype: str
    files: dict[str, FileRecord]
    repo_id: str
    revision: str | None
    license: str
    training_data: tuple[str, ...]
    evaluation_data: str
    metrics: dict[str, float]
    metrics_command: str
    intended_use: str
    limitations: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """Checksum of the weights file, the one ``findings.json`` records."""
        return self.files[WEIGHTS_FILE].sha256

    @property
    def published(self) -> bool:
        """Whether the weights are on the Hugging Face Hub at a pinned revision."""
        return self.revision is not None

    @property
    def revision_label(self) -> str:
        """The revision as shown to users: its first 12 hex digits, or ``unpublished``."""
        return self.revision[:12] if self.revision is not None else UNPUBLISHED

    @property
    def size(self) -> int:
        """Total size of the model's files in bytes."""
        return sum(record.size for record in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        """The entry as it is written in ``manifest.json``."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "config": self.config,
            "dtype": self.dtype,
            "files": {name: {"sha256": r.sha256, "size": r.size} for name, r in self.files.items()},
            "repo_id": self.repo_id,
            "revision": self.revision,
            "license": self.license,
            "training_data": list(self.training_data),
            "evaluation_data": self.evaluation_data,
            "metrics": self.metrics,
            "metrics_command": self.metrics_command,
            "intended_use": self.intended_use,
            "limitations": list(self.limitations),
        }


@dataclass(frozen=True)
class Manifest:
    """All model entries, and where bundled files live.

    Attributes:
        models: entries by name, in manifest order.
        bundled_dir: the folder holding ``<name>/config.json`` and ``<name>/model.safetensors``
            of bundled models (the manifest's own folder); ``None`` if nothing is bundled.
    """

    models: dict[str, ModelEntry] = field(default_factory=dict)
    bundled_dir: Path | None = None

    def get(self, name: str) -> ModelEntry:
        """The entry of a model.

        Args:
            name: a model name.

        Returns:
            Its entry.

        Raises:
            WeightsError: if the manifest has no such model.
        """
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(self.models) or "none"
            raise WeightsError(f"no model {name!r} in the weights manifest (models: {known})",
                               "check the name with `lungai weights list`") from None


def load_manifest() -> dict[str, Any]:
    """The bundled manifest as a dict (``{"manifest_version": 1, "models": [...]}``)."""
    text = resources.files("lungai.weights").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


def packaged_dir() -> Path:
    """The installed ``lungai.weights`` folder: the bundled manifest and model files."""
    return Path(str(resources.files("lungai.weights")))


def read_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and check a manifest file.

    Args:
        path: a ``manifest.json``; ``None`` reads the one installed with LungAI. Bundled model
            files are looked for beside the file.

    Returns:
        The checked manifest.

    Raises:
        WeightsError: if the file cannot be read or breaks the format.
    """
    file = Path(path) if path is not None else packaged_dir() / "manifest.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read the weights manifest {file} ({exc})", "reinstall LungAI") from None
    return parse_manifest(data, bundled_dir=file.parent, source=str(file))


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise WeightsError(f"invalid weights manifest: {where}: {problem}", "reinstall LungAI or fix the manifest")


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    _require(isinstance(value, str) and bool(value.strip()), where, f"{key!r} must be a non-empty string")
    return str(value)


def _texts(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    _require(isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value),
             where, f"{key!r} must be a non-empty list of strings")
    return tuple(str(v) for v in value or ())


def _files(data: dict[str, Any], where: str) -> dict[str, FileRecord]:
    files = data.get("files") or {}
    _require(isinstance(files, dict) and sorted(files) == sorted(MODEL_FILES), where,
             f"'files' must list exactly {', '.join(MODEL_FILES)}")
    records = {}
    for name in MODEL_FILES:
        record = files[name]
        _require(isinstance(record, dict) and isinstance(record.get("sha256"), str)
                 and bool(_SHA256.match(record["sha256"])), where, f"{name}: 'sha256' must be 64 lowercase hex digits")
        size = record.get("size")
        _require(isinstance(size, int) and not isinstance(size, bool) and size > 0, where,
                 f"{name}: 'size' must be a positive integer")
        records[name] = FileRecord(sha256=record["sha256"], size=size)
    return records


def parse_entry(data: Any) -> ModelEntry:
    """Check one model entry and build it.

    Args:
        data: the entry as decoded from JSON.

    Returns:
        The entry.

    Raises:
        WeightsError: naming the first field that breaks the format.
    """
    _require(isinstance(data, dict), "models", "each entry must be an object")
    where = f"model {data.get('name', '?')!r}"
    name = _text(data, "name", where)
    _require(bool(_NAME.match(name)), where, "'name' must be lowercase letters, digits and underscores")
    _require(isinstance(data.get("config"), dict), where, "'config' must be an object")
    dtype = _text(data, "dtype", where)
    _require(dtype in DTYPES, where, f"'dtype' must be one of {', '.join(DTYPES)}")
    repo_id = _text(data, "repo_id", where)
    _require(bool(_REPO_ID.match(repo_id)), where, "'repo_id' must be 'owner/name'")
    revision = data.get("revision")
    _require(revision is None or (isinstance(revision, str) and bool(_COMMIT.match(revision))), where,
             "'revision' must be a pinned 40-hex commit (not a branch or tag), or null while unpublished")
    metrics = data.get("metrics")
    _require(isinstance(metrics, dict) and bool(metrics) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in metrics.items()),
        where, "'metrics' must map metric names to numbers")
    return ModelEntry(
        name=name,
        architecture=_text(data, "architecture", where),
        config=data["config"],
        dtype=dtype,
        files=_files(data, where),
        repo_id=repo_id,
        revision=revision,
        license=_text(data, "license", where),
        training_data=_texts(data, "training_data", where),
        evaluation_data=_text(data, "evaluation_data", where),
        metrics=dict(metrics),
        metrics_command=_text(data, "metrics_command", where),
        intended_use=_text(data, "intended_use", where),
        limitations=_texts(data, "limitations", where),
    )


def parse_manifest(data: Any, bundled_dir: Path | None = None, source: str = "manifest") -> Manifest:
    """Check a decoded manifest and build it.

    Args:
        data: the manifest as decoded from JSON.
        bundled_dir: where bundled model folders live (``None``: nothing is bundled).
        source: the manifest's path or name, for messages.

    Returns:
        The manifest.

    Raises:
        WeightsError: if the version is unknown, a name repeats or an entry breaks the format.
    """
    _require(isinstance(data, dict), source, "must be a JSON object")
    _require(data.get("manifest_version") == MANIFEST_VERSION, source,
             f"'manifest_version' must be {MANIFEST_VERSION}")
    _require(isinstance(data.get("models"), list), source, "'models' must be a list")
    models: dict[str, ModelEntry] = {}
    for item in data["models"]:
        entry = parse_entry(item)
        _require(entry.name not in models, source, f"model {entry.name!r} is listed twice")
        models[entry.name] = entry
    return Manifest(models=models, bundled_dir=bundled_dir)


def manifest_dict(entries: list[ModelEntry]) -> dict[str, Any]:
    """A manifest in its JSON form, for writing ``manifest.json``.

    Args:
        entries: the models, in the order to list them.

    Returns:
        ``{"manifest_version": 1, "models": [...]}``.
    """
    return {"manifest_version": MANIFEST_VERSION, "models": [entry.to_dict() for entry in entries]}
