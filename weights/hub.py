"""The Hugging Face Hub side of weight resolution: the local cache and pinned downloads.

Both go through ``huggingface_hub.hf_hub_download`` with the manifest's pinned commit, so
the cache layout, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_ENDPOINT``, proxies and
``HF_HUB_OFFLINE`` behave exactly as for any other Hugging Face client. ``huggingface_hub``
reads those variables when it is first imported, so it is imported here lazily and they
must be set before LungAI starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lungai import __version__
from lungai.weights.manifest import MODEL_FILES, ModelEntry

logger = logging.getLogger(__name__)


class HubUnavailableError(Exception):
    """A download from the Hub failed; the message says why in a few words."""


def hub_offline() -> bool:
    """Whether Hugging Face downloads are switched off (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder in use (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _download(entry: ModelEntry, local_files_only: bool, force: bool) -> Path:
    from huggingface_hub import hf_hub_download

    folders = {
        Path(hf_hub_download(entry.repo_id, filename, revision=entry.revision, local_files_only=local_files_only,
                             force_download=force, library_name="lungai", library_version=__version__)).parent
        for filename in MODEL_FILES
    }
    if len(folders) != 1:
        raise HubUnavailableError(f"the files of {entry.repo_id} landed in different folders: {sorted(folders)}")
    return folders.pop()


def cached_folder(entry: ModelEntry) -> Path | None:
    """The cache snapshot holding all files of a model at its pinned revision, without network.

    Args:
        entry: the model.

    Returns:
        The snapshot folder, or ``None`` if any file is not in the cache or the model is not
        published on the Hub.
    """
    if not entry.published:
        return None
    try:
        return _download(entry, local_files_only=True, force=False)
    except (OSError, HubUnavailableError) as exc:
        logger.debug("%s not in the Hugging Face cache: %s", entry.name, exc)
        return None


def _reason(exc: Exception) -> str:
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError):
        return "the Hub cannot be reached: no network, or a proxy or firewall blocks it"
    if isinstance(exc, RevisionNotFoundError):
        return "the pinned revision is not in the repository"
    if isinstance(exc, RepositoryNotFoundError):
        return "the repository does not exist or is private"
    if isinstance(exc, EntryNotFoundError):
        return "a file is missing from the repository"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line[:200]}"


def download_folder(entry: ModelEntry, force: bool = False) -> Path:
    """Download a model's files at the pinned revision into the Hugging Face cache.

    Files already cached at that revision are not downloaded again unless ``force``.

    Args:
        entry: the model.
        force: download even if the files are cached (replaces a damaged cached copy).

    Returns:
        The cache snapshot folder holding the files.

    Raises:
        HubUnavailableError: if the model is not published or the download failed; the message
            says why in a few words.
    """
    if not entry.published:
        raise HubUnavailableError(f"{entry.name} is not published on the Hugging Face Hub yet")
    logger.info("downloading %s from %s at %s", entry.name, entry.repo_id, entry.revision)
    try:
        return _download(entry, local_files_only=False, force=force)
    except (OSError, ValueError) as exc:
        raise HubUnavailableError(_reason(exc)) from exc
