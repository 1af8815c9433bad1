"""Weights bundles: one zip that carries models to an air-gapped machine.

A bundle holds ``lungai-bundle.json`` (format, LungAI version, models and their revisions)
and ``<name>/config.json`` + ``<name>/model.safetensors`` per model. Importing trusts
nothing in the zip: every member must be a known file of a model in this LungAI's manifest,
at a safe path, with the manifest's size and sha256. Files are written to a hidden staging
folder inside the weights folder and each model folder is moved into place only when every
file of the bundle has been verified, so a bad bundle changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from lungai import __version__
from lungai.errors import OutputExistsError, OutputNotWritableError, WeightsError
from lungai.weights.manifest import MODEL_FILES, UNPUBLISHED, FileRecord, Manifest, read_manifest
from lungai.weights.resolver import WEIGHTS_DIR_ENV, resolve, weights_dir
from lungai.weights.verify import CHUNK

logger = logging.getLogger(__name__)

BUNDLE_INFO = "lungai-bundle.json"
BUNDLE_FORMAT = "lungai-weights-bundle"
BUNDLE_VERSION = 1
#: Fixed member timestamps make bundles of the same weights byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_INFO_MAX_BYTES = 1 << 20
_UNSAFE_FIX = "the file was not made by `lungai weights export`; do not use it"


def _copy_checked(source: IO[bytes], target: IO[bytes], expected: FileRecord, what: str) -> None:
    """Copy a stream, refusing it as soon as it is longer than expected or when its sha256 differs."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > expected.size:
            raise WeightsError(f"{what} is larger than the manifest's {expected.size} bytes", _UNSAFE_FIX)
        digest.update(chunk)
        target.write(chunk)
    if size != expected.size or digest.hexdigest() != expected.sha256:
        raise WeightsError(f"{what} failed verification ({size} bytes, sha256 {digest.hexdigest()}; "
                           f"the manifest expects {expected.size} bytes, sha256 {expected.sha256})",
                           "export the bundle again from a verified installation (`lungai weights verify`)")


def export_bundle(names: Sequence[str], output: str | os.PathLike[str], manifest: Manifest | None = None,
                  overwrite: bool = False) -> Path:
    """Write models into a bundle zip, fetching any that are not installed.

    Args:
        names: model names, at least one.
        output: the zip to write; written under a temporary name and renamed at the end.
        manifest: the manifest to use; ``None`` reads the installed one.
        overwrite: replace an existing ``output``.

    Returns:
        The bundle's path.

    Raises:
        ValueError: if ``names`` is empty.
        OutputExistsError: if ``output`` exists and ``overwrite`` is false.
        OutputNotWritableError: if the zip cannot be written.
        WeightsError: if a model cannot be resolved or fails verification.
    """
    if not names:
        raise ValueError("export_bundle needs at least one model name")
    manifest = manifest or read_manifest()
    target = Path(output)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists", "use --overwrite or another -o")
    resolved = [resolve(name, manifest) for name in dict.fromkeys(names)]
    info = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "lungai_version": __version__,
            "models": [{"name": r.entry.name, "revision": r.entry.revision} for r in resolved]}
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write {target} ({exc.strerror or exc})",
                                     "choose another -o") from None
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr(zipfile.ZipInfo(BUNDLE_INFO, _ZIP_DATE), json.dumps(info, indent=2) + "\n")
            for weights in resolved:
                for filename in MODEL_FILES:
                    member = zipfile.ZipInfo(f"{weights.entry.name}/{filename}", _ZIP_DATE)
                    member.compress_type = zipfile.ZIP_DEFLATED
                    with open(weights.path(filename), "rb") as source, bundle.open(member, "w") as sink:
                        _copy_checked(source, sink, weights.entry.files[filename], str(weights.path(filename)))
        os.replace(temporary, target)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write {target} ({exc.strerror or exc})", "choose another -o") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    logger.info("exported %s to %s", ", ".join(r.entry.name for r in resolved), target)
    return target


def _member_parts(info: zipfile.ZipInfo, bundle: Path) -> list[str]:
    """The path components of a member, refusing absolute paths, ``..``, links and encryption."""
    name = info.filename
    parts = name.rstrip("/").split("/")
    if (name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name)
            or any(part in ("", ".", "..") for part in parts)):
        raise WeightsError(f"{bundle}: unsafe path {name!r} in the bundle", _UNSAFE_FIX)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise WeightsError(f"{bundle}: {name!r} is a symbolic link", _UNSAFE_FIX)
    if info.flag_bits & 0x1:
        raise WeightsError(f"{bundle}: {name!r} is encrypted", _UNSAFE_FIX)
    return parts


def _read_info(archive: zipfile.ZipFile, info: zipfile.ZipInfo, bundle: Path) -> dict[str, Any]:
    if info.file_size > _INFO_MAX_BYTES:
        raise WeightsError(f"{bundle}: {BUNDLE_INFO} is too large", _UNSAFE_FIX)
    try:
        data = json.loads(archive.read(info).decode("utf-8"))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{bundle}: {BUNDLE_INFO} is not valid JSON ({exc})", _UNSAFE_FIX) from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise WeightsError(f"{bundle} is not a LungAI weights bundle", "make one with `lungai weights export`")
    if data.get("format_version") != BUNDLE_VERSION:
        raise WeightsError(f"{bundle} has bundle format {data.get('format_version')!r}, this LungAI reads "
                           f"{BUNDLE_VERSION}", "export it with this LungAI version")
    return data


def _plan(archive: zipfile.ZipFile, manifest: Manifest, bundle: Path) -> dict[str, dict[str, zipfile.ZipInfo]]:
    """Check every member of a bundle before anything is written; the members to extract, by model."""
    members: dict[str, dict[str, zipfile.ZipInfo]] = {}
    info_member: zipfile.ZipInfo | None = None
    seen: set[str] = set()
    for info in archive.infolist():
        parts = _member_parts(info, bundle)
        key = "/".join(parts)
        if key in seen:
            raise WeightsError(f"{bundle}: {info.filename!r} appears twice", _UNSAFE_FIX)
        seen.add(key)
        if info.is_dir() and len(parts) == 1 and parts[0] in manifest.models:
            continue
        if not info.is_dir() and parts == [BUNDLE_INFO]:
            info_member = info
            continue
        if info.is_dir() or len(parts) != 2 or parts[0] not in manifest.models or parts[1] not in MODEL_FILES:
            raise WeightsError(f"{bundle}: unknown file {info.filename!r} (not a file of a model in this LungAI's "
                               "manifest)", "export the bundle with the same LungAI version")
        expected = manifest.models[parts[0]].files[parts[1]].size
        if info.file_size != expected:
            raise WeightsError(f"{bundle}: {info.filename} has {info.file_size} bytes, the manifest expects "
                               f"{expected}", "export the bundle again from a verified installation")
        members.setdefault(parts[0], {})[parts[1]] = info
    if info_member is None:
        raise WeightsError(f"{bundle} has no {BUNDLE_INFO}; it is not a LungAI weights bundle",
                           "make one with `lungai weights export`")
    listed = {}
    for model in _read_info(archive, info_member, bundle).get("models", []):
        if isinstance(model, dict):
            listed[model.get("name")] = model.get("revision")
    if set(listed) != set(members) or not members:
        raise WeightsError(f"{bundle}: its model list does not match its files", _UNSAFE_FIX)
    for name, files in members.items():
        entry = manifest.models[name]
        if listed[name] != entry.revision:
            raise WeightsError(f"{bundle} holds {name} at revision {listed[name] or UNPUBLISHED}, this LungAI "
                               f"needs {entry.revision_label}", "export the bundle with the same LungAI version")
        missing = [filename for filename in MODEL_FILES if filename not in files]
        if missing:
            raise WeightsError(f"{bundle}: {name} lacks {', '.join(missing)}", "export the bundle again")
    return members


def _move_into_place(new: Path, target: Path, staging: Path) -> None:
    """Replace ``target`` by ``new`` with renames only; the old folder is left in ``staging``."""
    old = staging / f".old-{target.name}"
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old.exists():
            os.replace(old, target)
        raise


def import_bundle(bundle: str | os.PathLike[str], manifest: Manifest | None = None,
                  destination: str | os.PathLike[str] | None = None) -> list[str]:
    """Verify a bundle completely, then install its models into the user weights folder.

    Args:
        bundle: the zip made by :func:`export_bundle`.
        manifest: the manifest to check against; ``None`` reads the installed one.
        destination: the weights folder; ``None`` uses :func:`~lungai.weights.resolver.weights_dir`.

    Returns:
        The names of the models installed.

    Raises:
        WeightsError: if the bundle is unreadable, has unsafe or unknown members, or a file
            fails verification; nothing is changed then.
        OutputNotWritableError: if the weights folder cannot be written.
    """
    manifest = manifest or read_manifest()
    source = Path(bundle)
    folder = Path(destination) if destination is not None else weights_dir()
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"cannot open {source} as a zip file ({exc})",
                           "make a bundle with `lungai weights export` and copy it completely") from None
    with archive:
        plan = _plan(archive, manifest, source)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".import-", dir=folder))
        except OSError as exc:
            raise OutputNotWritableError(f"cannot write to the weights folder {folder} ({exc.strerror or exc})",
                                         f"set {WEIGHTS_DIR_ENV} to a writable folder") from None
        try:
            for name, files in plan.items():
                (staging / name).mkdir()
                for filename, info in files.items():
                    with archive.open(info) as member, open(staging / name / filename, "wb") as sink:
                        _copy_checked(member, sink, manifest.models[name].files[filename],
                                      f"{source}: {info.filename}")
            for name in plan:
                _move_into_place(staging / name, folder / name, staging)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise WeightsError(f"{source} is damaged ({exc})", "copy the bundle again") from None
        except OSError as exc:
            raise OutputNotWritableError(f"cannot write to the weights folder {folder} ({exc.strerror or exc})",
                                         f"free some space or set {WEIGHTS_DIR_ENV} to a writable folder") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("imported %s into %s", ", ".join(plan), folder)
    return list(plan)
