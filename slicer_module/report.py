"""Saving a run's report files where the user chooses."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from lungai.slicer.results import OutputFiles

logger = logging.getLogger(__name__)


def save_report(files: OutputFiles, destination: Path) -> list[Path]:
    """Copy ``report.html`` (when written), ``findings.json`` and ``nodules.csv`` (when present).

    The copies are named after the outputs, e.g. ``scan_findings.json``, so reports of several
    scans can share a folder; a copy replaces an earlier file of the same name.

    Args:
        files: the run's output files.
        destination: an existing folder.

    Returns:
        The paths of the copies.

    Raises:
        NotADirectoryError: ``destination`` is not an existing folder.
        OSError: a file cannot be copied.
    """
    destination = Path(destination)
    if not destination.is_dir():
        raise NotADirectoryError(f"{destination} is not a folder")
    copies = []
    for source in (files.report, files.findings, files.nodules):
        if source is None:
            continue
        target = destination / f"{files.stem}_{source.name}"
        shutil.copyfile(source, target)
        copies.append(target)
    logger.info("saved the report of %s to %s", files.stem, destination)
    return copies
