"""Progress events emitted by the pipeline, for progress bars and for programs (Slicer).

The pipeline calls a :data:`ProgressCallback` with a :class:`ProgressEvent` when a stage
starts and finishes. ``--progress jsonl`` prints each event as one JSON object per line;
the format is documented in ``docs/progress-jsonl.md`` and parsed by ``lungai.slicer``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

PROGRESS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened during a run.

    Attributes:
        event: ``start`` (run begins), ``stage`` (stage started/finished), ``done`` or ``error``.
        stage: stage name (``read``, ``lungs``, ``emphysema``, ``write``, ...) for stage events.
        status: ``started`` or ``finished`` for stage events.
        index: 1-based stage number.
        total: number of stages in this run.
        fraction: overall progress 0..1.
        elapsed_s: seconds since the run started.
        message: human-readable detail (the error message for ``error``).
        data: extra fields (``output`` folder on ``done``, ``exit_code`` on ``error``).
    """

    event: str
    stage: str = ""
    status: str = ""
    index: int = 0
    total: int = 0
    fraction: float = 0.0
    elapsed_s: float = 0.0
    message: str = ""
    data: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON line, with the schema version."""
        payload = {"v": PROGRESS_SCHEMA_VERSION, **asdict(self)}
        payload["fraction"] = round(self.fraction, 4)
        payload["elapsed_s"] = round(self.elapsed_s, 3)
        return json.dumps(payload, separators=(",", ":"))


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(_event: ProgressEvent) -> None:
    """A callback that does nothing."""
