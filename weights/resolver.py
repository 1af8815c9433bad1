"""Finding a model's weights, verifying them, and loading them.

Sources are tried in a fixed order: the user weights folder (``LUNGAI_WEIGHTS_DIR``), the
files bundled with the package, the Hugging Face cache, and finally a download from the
Hugging Face Hub at the manifest's pinned commit. The first source that has a model's files
is the one used; its files must match the manifest's sizes and sha256 checksums, otherwise
the model is refused (a damaged copy is never skipped silently). Files are safetensors and
JSON only; nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from lungai.errors import WeightsError
from lungai.weights import hub
from lungai.weights.manifest import MODEL_FILES, UNPUBLISHED, Manifest, ModelEntry, read_manifest
from lungai.weights.verify import check_file

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lungai.io.findings import WeightsInfo

logger = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "LUNGAI_WEIGHTS_DIR"
#: Most bytes the weights bundled in the package may take.
BUNDLED_LIMIT_BYTES = 50 * 1000 * 1000


class Source(str, Enum):
    """Where a model's files were found."""

    WEIGHTS_DIR = "weights_dir"
    BUNDLED = "bundled"
    HF_CACHE = "hf_cache"
    HF_DOWNLOAD = "hf_download"


@dataclass(frozen=True)
class ResolvedWeights:
    """A model's verified files.

    Attributes:
        entry: the model's manifest entry.
        folder: the folder holding ``config.json`` and ``model.safetensors``.
        source: where the folder is.
    """

    entry: ModelEntry
    folder: Path
    source: Source

    def path(self, filename: str) -> Path:
        """The path of one of the model's files."""
        return self.folder / filename


@dataclass(frozen=True)
class WeightsStatus:
    """What is installed locally for one model, for ``lungai weights list`` and ``verify``.

    Attributes:
        entry: the model's manifest entry.
        source: the local source that would be used; ``None`` if none has the model.
        folder: that source's folder.
        problem: why verification failed; ``None`` if it passed or nothing is installed.
    """

    entry: ModelEntry
    source: Source | None
    folder: Path | None
    problem: str | None

    @property
    def verified(self) -> bool:
        """Installed and matching the manifest."""
        return self.source is not None and self.problem is None


def weights_dir() -> Path:
    """The user weights folder: ``$LUNGAI_WEIGHTS_DIR``, or a per-user default.

    The default is ``$XDG_DATA_HOME/lungai/weights`` (``~/.local/share/lungai/weights``) on
    Linux, ``~/Library/Application Support/lungai/weights`` on macOS and
    ``%LOCALAPPDATA%\\lungai\\weights`` on Windows. ``lungai weights import`` writes here.
    """
    configured = os.environ.get(WEIGHTS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "lungai" / "weights"


def _has_files(folder: Path) -> bool:
    return any((folder / filename).is_file() for filename in MODEL_FILES)


def _local_sources(entry: ModelEntry, manifest: Manifest) -> Iterator[tuple[Source, Path]]:
    """Local folders that hold (some of) a model's files, in resolution order, looked up lazily."""
    user_folder = weights_dir() / entry.name
    if _has_files(user_folder):
        yield Source.WEIGHTS_DIR, user_folder
    if manifest.bundled_dir is not None and _has_files(manifest.bundled_dir / entry.name):
        yield Source.BUNDLED, manifest.bundled_dir / entry.name
    cached = hub.cached_folder(entry)
    if cached is not None:
        yield Source.HF_CACHE, cached


def installed_folders(name: str, manifest: Manifest | None = None) -> list[Path]:
    """Every local folder the resolver would take a model's files from (no network, no verification)."""
    manifest = manifest or read_manifest()
    return [folder for _, folder in _local_sources(manifest.get(name), manifest)]


def _fix(entry: ModelEntry, source: Source, folder: Path) -> str:
    if source is Source.WEIGHTS_DIR:
        return f"delete {folder} and import the model again (`lungai weights import`)"
    if source is Source.BUNDLED:
        return "reinstall LungAI (pip install --force-reinstall lungai)"
    if source is Source.HF_CACHE:
        return f"run `lungai weights fetch {entry.name} --force` to download it again"
    return "try again later; if it persists, the Hub copy does not match this LungAI version: please report it"


def _verified(entry: ModelEntry, source: Source, folder: Path) -> ResolvedWeights:
    fix = _fix(entry, source, folder)
    for filename in MODEL_FILES:
        check_file(folder / filename, entry.files[filename], fix)
    logger.debug("verified %s (%s) in %s", entry.name, source.value, folder)
    return ResolvedWeights(entry=entry, folder=folder, source=source)


def check(name: str, manifest: Manifest | None = None) -> WeightsStatus:
    """Find a model locally (no network) and verify it, reporting instead of raising.

    Args:
        name: the model name.
        manifest: the manifest to use; ``None`` reads the installed one.

    Returns:
        Its status.

    Raises:
        WeightsError: if the manifest has no such model.
    """
    manifest = manifest or read_manifest()
    entry = manifest.get(name)
    found = next(_local_sources(entry, manifest), None)
    if found is None:
        return WeightsStatus(entry=entry, source=None, folder=None, problem=None)
    try:
        _verified(entry, *found)
    except WeightsError as exc:
        return WeightsStatus(entry=entry, source=found[0], folder=found[1], problem=exc.problem)
    return WeightsStatus(entry=entry, source=found[0], folder=found[1], problem=None)


def locate(name: str, manifest: Manifest | None = None) -> ResolvedWeights | None:
    """Find and verify a model's files locally, without network.

    Args:
        name: the model name.
        manifest: the manifest to use; ``None`` reads the installed one.

    Returns:
        The verified files, or ``None`` if no local source has them.

    Raises:
        WeightsError: if the model is unknown, or the first local source that has its files
            fails verification.
    """
    manifest = manifest or read_manifest()
    entry = manifest.get(name)
    found = next(_local_sources(entry, manifest), None)
    return None if found is None else _verified(entry, *found)


def _not_installed(entry: ModelEntry, reason: str) -> WeightsError:
    return WeightsError(
        f"weights for {entry.name} are not installed (looked in {weights_dir()} [{WEIGHTS_DIR_ENV}], "
        f"the LungAI package and the Hugging Face cache {hub.hub_cache_dir()}) and {reason}",
        f"on a machine with network run `lungai weights export {entry.name} -o {entry.name}.zip`, "
        f"copy the file here and run `lungai weights import {entry.name}.zip`",
    )


def resolve(name: str, manifest: Manifest | None = None, *, download: bool = True,
            force_download: bool = False) -> ResolvedWeights:
    """Find a model's weights, downloading them at the pinned revision if needed, and verify them.

    Args:
        name: the model name.
        manifest: the manifest to use; ``None`` reads the installed one.
        download: allow a download from the Hugging Face Hub when no local source has the model.
        force_download: download from the Hub even if a local source has the model (replaces
            a damaged copy in the Hugging Face cache).

    Returns:
        The verified files and where they came from.

    Raises:
        WeightsError: if the model is unknown, its files fail verification, or it is not
            installed and cannot be downloaded; the message says what to do.
    """
    manifest = manifest or read_manifest()
    entry = manifest.get(name)
    if not force_download:
        found = locate(name, manifest)
        if found is not None:
            return found
    if hub.hub_offline() and force_download:
        raise WeightsError(f"cannot download {name} again: Hugging Face downloads are off (HF_HUB_OFFLINE=1)",
                           "unset HF_HUB_OFFLINE on a machine with network, or import a bundle")
    if hub.hub_offline():
        raise _not_installed(entry, "Hugging Face downloads are off (HF_HUB_OFFLINE=1)")
    if not download:
        raise _not_installed(entry, "downloading was not allowed")
    try:
        folder = hub.download_folder(entry, force=force_download)
    except hub.HubUnavailableError as exc:
        raise _not_installed(entry, f"downloading {entry.repo_id} at {entry.revision_label} failed ({exc})") from None
    return _verified(entry, Source.HF_DOWNLOAD, folder)


def load_model(name: str, device: str | torch.device = "cpu", manifest: Manifest | None = None) -> nn.Module:
    """Resolve and verify a model's weights, then build the model through the checkpoint loader.

    Args:
        name: the model name.
        device: where to put the model.
        manifest: the manifest to use; ``None`` reads the installed one.

    Returns:
        The model in eval mode.

    Raises:
        WeightsError: if the weights cannot be resolved, fail verification or do not load.
    """
    from lungai.models.checkpoint import load_model as load_checkpoint  # imports torch

    resolved = resolve(name, manifest)
    logger.info("loading %s (%s, revision %s)", name, resolved.source.value, resolved.entry.revision_label)
    return load_checkpoint(resolved.folder, device)


def weights_info(name: str, manifest: Manifest | None = None) -> WeightsInfo:
    """What ``findings.json`` records for a model loaded with :func:`load_model`.

    The loader accepts only files whose sha256 is the manifest's, so the manifest's name,
    revision and weights checksum are exactly what was loaded.

    Args:
        name: the model name.
        manifest: the manifest to use; ``None`` reads the installed one.

    Returns:
        Name, pinned revision and sha256 of ``model.safetensors``.

    Raises:
        WeightsError: if the manifest has no such model.
    """
    from lungai.io.findings import WeightsInfo  # the findings schema imports SimpleITK

    entry = (manifest or read_manifest()).get(name)
    return WeightsInfo(name=entry.name, revision=entry.revision or UNPUBLISHED, sha256=entry.sha256)


def bundled_size(manifest: Manifest | None = None) -> int:
    """Bytes taken by the model folders bundled in the package (weights, configs, model cards).

    Args:
        manifest: the manifest to use; ``None`` reads the installed one.

    Returns:
        The total size; at most :data:`BUNDLED_LIMIT_BYTES` for a release.
    """
    manifest = manifest or read_manifest()
    if manifest.bundled_dir is None:
        return 0
    return sum(path.stat().st_size for name in manifest.models
               for path in (manifest.bundled_dir / name).glob("*") if path.is_file())
