"""Fingerprints of a run's input files, for the ``provenance`` block of ``findings.json``.

A file is fingerprinted by its sha256 (files over :data:`HASH_LIMIT_BYTES` by size and
modification time instead); a DICOM folder by the sha256 of its series' slices' sha256 digests,
one hex digest and a newline per slice, in slice order. A detached NRRD or MetaImage header
(``.nhdr``, ``.mhd``) also fingerprints the data file it names.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

from lungai.io.findings import InputFile
from lungai.io.volume import CTVolume

#: Files larger than this are fingerprinted by size and modification time, not hashed.
HASH_LIMIT_BYTES = 4 * 1024**3

_CHUNK = 1024 * 1024
#: How detached headers name their data file: NRRD ``data file:``, MetaImage ``ElementDataFile =``.
_DATA_FILE = re.compile(r"^(?:data file|datafile|ElementDataFile)\s*[:=]\s*(\S.*?)\s*$", re.IGNORECASE | re.MULTILINE)


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mtime_utc(paths: list[Path]) -> str:
    latest = max(path.stat().st_mtime for path in paths)
    return datetime.fromtimestamp(latest, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_fingerprint(path: Path, series_uid: str | None = None) -> InputFile:
    """One file's fingerprint: sha256, or size and modification time above :data:`HASH_LIMIT_BYTES`."""
    size = path.stat().st_size
    if size > HASH_LIMIT_BYTES:
        return InputFile(str(path), series_uid, 1, size, mtime_utc=_mtime_utc([path]))
    return InputFile(str(path), series_uid, 1, size, sha256=sha256_of(path))


def series_fingerprint(folder: Path, files: list[Path], series_uid: str | None) -> InputFile:
    """A DICOM folder's fingerprint over the files of the series that was read."""
    size = sum(path.stat().st_size for path in files)
    if size > HASH_LIMIT_BYTES:
        return InputFile(str(folder), series_uid, len(files), size, mtime_utc=_mtime_utc(files))
    digests = "".join(f"{sha256_of(path)}\n" for path in files)
    return InputFile(str(folder), series_uid, len(files), size,
                     sha256=hashlib.sha256(digests.encode("ascii")).hexdigest())


def detached_data_file(header: Path) -> Path | None:
    """The data file a ``.nhdr`` or ``.mhd`` header names, when it is one existing file."""
    if header.suffix.lower() not in (".nhdr", ".mhd"):
        return None
    text = header.read_bytes()[:65536].decode("latin-1")
    match = _DATA_FILE.search(text)
    if match is None or match.group(1).upper().startswith(("LIST", "LOCAL")):
        return None
    data = header.parent / match.group(1)
    return data if data.is_file() else None


def input_fingerprints(volume: CTVolume, source: Path) -> list[InputFile]:
    """Fingerprints of what a run read: the DICOM series of a folder, else the input file (and its data file)."""
    source = Path(source)
    if source.is_dir():
        return [series_fingerprint(source, [Path(p) for p in volume.dicom_files], volume.series_uid)]
    inputs = [file_fingerprint(source, volume.series_uid)]
    data = detached_data_file(source)
    if data is not None:
        inputs.append(file_fingerprint(data))
    return inputs
