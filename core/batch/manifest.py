"""The batch manifest: which cases are done, for which input and settings, so a rerun resumes.

``OUT_DIR/manifest.jsonl`` gets one JSON line per finished or failed case, appended and
flushed as the case ends; the last line of a case wins, and a line cut short by a killed
process is ignored. A case's ``key`` is a sha256 over its input fingerprint (path, size and
modification time of every file it reads), the LungAI version and the batch settings: a
rerun skips a case whose key is unchanged and redoes one whose input or settings changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from lungai import __version__
from lungai.batch.cases import Case

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"


def fingerprint(case: Case) -> list[list[object]]:
    """``[path, size, mtime_ns]`` of every file the case reads (a DICOM series' files, or its one file;
    a follow-up case's prior file or every file under its prior folder too).

    A missing input gives ``[path, None, None]``: its run fails, and it is redone once it exists.
    """
    paths = list(case.files or (case.path,))
    if case.prior is not None:
        paths += [p for p in case.prior.rglob("*") if p.is_file()] if case.prior.is_dir() else [case.prior]
    rows: list[list[object]] = []
    for path in sorted(paths):
        try:
            stat = Path(path).stat()
        except OSError:
            rows.append([str(Path(path).absolute()), None, None])
            continue
        rows.append([str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns])
    return rows


def case_key(case: Case, settings: dict[str, Any]) -> str:
    """The sha256 that decides whether a previous result of ``case`` still holds."""
    payload = {"case_id": case.case_id, "series_uid": case.series_uid, "input": fingerprint(case),
               "lungai_version": __version__, "settings": settings}
    if case.prior is not None:
        payload["follow_up"] = {"prior": str(case.prior.absolute()), "prior_date": case.prior_date,
                                "current_date": case.current_date}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest entry of every case in ``out_dir``'s manifest (``{}`` without one)."""
    path = out_dir / MANIFEST_NAME
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s line %d is incomplete (a batch was killed while writing it); ignored", path, number)
                continue
            entries[entry["case_id"]] = entry
    return entries


def append_entry(out_dir: Path, entry: dict[str, Any]) -> None:
    """Append one case's entry and flush it to disk."""
    with (out_dir / MANIFEST_NAME).open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def is_current(entry: dict[str, Any] | None, key: str, out_dir: Path, retry_failed: bool) -> bool:
    """Whether a case's previous entry stands: same key, and done with its outputs there or failed
    (when failed cases are not retried)."""
    if entry is None or entry.get("key") != key:
        return False
    if entry.get("status") == "done":
        return (out_dir / entry["case_id"]).is_dir()
    return not retry_failed
