"""Checksums: every weights file is checked against its manifest record before use."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lungai.errors import WeightsError
from lungai.weights.manifest import FileRecord

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The lowercase hex sha256 of a file, read in chunks.

    Args:
        path: the file (symbolic links are followed).

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | os.PathLike[str]) -> FileRecord:
    """Size and sha256 of a file, as the manifest lists them (for making manifest entries).

    Args:
        path: the file.

    Returns:
        Its record.
    """
    return FileRecord(sha256=sha256_file(path), size=os.path.getsize(path))


def check_file(path: Path, expected: FileRecord, fix: str) -> None:
    """Refuse a file whose size or sha256 differs from its manifest record.

    Args:
        path: the file.
        expected: its manifest record.
        fix: what the user should do if it fails, for the message.

    Raises:
        WeightsError: if the file is missing, unreadable, or its size or checksum differ.
    """
    try:
        size = path.stat().st_size
        actual = sha256_file(path) if size == expected.size else None
    except OSError as exc:
        raise WeightsError(f"cannot read {path} ({exc.strerror or exc})", fix) from None
    if size != expected.size:
        raise WeightsError(f"{path} has {size} bytes, the manifest expects {expected.size}", fix)
    if actual != expected.sha256:
        raise WeightsError(f"{path} failed verification: sha256 {actual}, the manifest expects {expected.sha256}",
                           fix)
