"""Parsing the lines that ``lungai run --progress jsonl`` prints on stdout.

The format is documented in ``docs/progress-jsonl.md``: one JSON object per line with
``"v": 1``. Lines that are not such objects (a library printing to stdout, a newer format)
are skipped, so a stray line never stops a run from being followed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: The ``v`` field this parser understands.
SUPPORTED_VERSION = 1

EVENTS = ("start", "stage", "done", "error")

#: How stages are named in the progress bar.
STAGE_TITLES = {
    "read": "Reading the scan",
    "lungs": "Lungs",
    "nodules": "Nodules",
    "malignancy": "Malignancy",
    "emphysema": "Emphysema",
    "write": "Writing results",
}


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress event of a run.

    Attributes:
        event: ``start``, ``stage``, ``done`` or ``error``.
        fraction: overall progress, 0 to 1.
        stage: stage name for ``stage`` events (``read``, ``lungs``, ...).
        status: ``started`` or ``finished`` for ``stage`` events.
        index: 1-based stage number.
        total: number of stages in the run.
        message: the one-line error message for ``error`` events; other text otherwise.
        exit_code: the exit code announced by an ``error`` event.
        output: the output folder named by ``start`` and ``done`` events.
    """

    event: str
    fraction: float
    stage: str = ""
    status: str = ""
    index: int = 0
    total: int = 0
    message: str = ""
    exit_code: int | None = None
    output: str | None = None

    @property
    def label(self) -> str:
        """Text for the progress bar, e.g. ``Lungs (2/4)``, ``Done`` or ``Failed``."""
        if self.event == "start":
            return "Starting"
        if self.event == "done":
            return "Done"
        if self.event == "error":
            return "Failed"
        title = STAGE_TITLES.get(self.stage, self.stage.capitalize())
        suffix = " done" if self.status == "finished" else ""
        return f"{title}{suffix} ({self.index}/{self.total})"


def parse_progress_line(line: str) -> ProgressUpdate | None:
    """Parse one stdout line of ``lungai run --progress jsonl``.

    Args:
        line: the line, with or without its line ending.

    Returns:
        The update, or ``None`` when the line is not a progress event this parser reads
        (blank, not JSON, another format version, an unknown event, malformed fields).
    """
    text = line.strip()
    if not text.startswith("{"):
        if text:
            logger.debug("not a progress line: %s", text)
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        logger.debug("not a progress line: %s", text)
        return None
    if not isinstance(payload, dict) or payload.get("v") != SUPPORTED_VERSION:
        logger.warning("skipping a progress line of an unknown format: %s", text)
        return None
    if payload.get("event") not in EVENTS:
        logger.warning("skipping a progress line with an unknown event: %s", text)
        return None
    try:
        return _update(payload)
    except (TypeError, ValueError):
        logger.warning("skipping a malformed progress line: %s", text)
        return None


def _update(payload: dict[str, object]) -> ProgressUpdate:
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        raise TypeError("data must be an object")
    exit_code = data.get("exit_code")
    output = data.get("output")
    return ProgressUpdate(
        event=str(payload["event"]),
        fraction=min(1.0, max(0.0, float(payload.get("fraction", 0.0)))),  # type: ignore[arg-type]  # parsed JSON of the child process; a malformed value raises, and the caller reports the line
        stage=str(payload.get("stage", "")),
        status=str(payload.get("status", "")),
        index=int(payload.get("index", 0)),  # type: ignore[call-overload]  # parsed JSON of the child process; a malformed value raises, and the caller reports the line
        total=int(payload.get("total", 0)),  # type: ignore[call-overload]  # parsed JSON of the child process; a malformed value raises, and the caller reports the line
        message=str(payload.get("message", "")),
        exit_code=None if exit_code is None else int(exit_code),
        output=None if output is None else str(output),
    )
