"""The command lines the Slicer module runs: ``python -m lungai.cli run ... --progress jsonl`` and ``... follow-up``.

The module never imports torch: the analysis runs in a separate Python process (Slicer's
``PythonSlicer``), and the module only builds its command line and reads its progress.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lungai.pipeline.availability import tasks_with_weights
from lungai.pipeline.config import ALL_TASKS, parse_tasks
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.weights.manifest import Manifest, read_manifest

#: The detection operating point of every run started from Slicer: the most sensitive one, so that
#: the module's slider (lowest detection score shown) can show more or fewer nodules afterwards.
RUN_OPERATING_POINT = "high"
#: The slider's start: the command line's default (``balanced``) operating point.
DEFAULT_MIN_DETECTION_SCORE = OPERATING_POINTS["balanced"].threshold
#: The lowest score the run writes out (the slider cannot show what was not written).
LOWEST_DETECTION_SCORE = OPERATING_POINTS[RUN_OPERATING_POINT].threshold

#: The device choices offered to users, in the order shown.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "GPU", "CPU")


def device_argument(choice: str, platform: str = sys.platform) -> str:
    """The ``--device`` value for a device choice.

    Args:
        choice: one of :data:`DEVICE_CHOICES`.
        platform: ``sys.platform`` of the machine; GPU means Apple's ``mps`` on macOS.

    Returns:
        ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Raises:
        ValueError: ``choice`` is not one of :data:`DEVICE_CHOICES`.
    """
    if choice == "GPU":
        return "mps" if platform == "darwin" else "cuda"
    if choice in ("auto", "CPU"):
        return choice.lower()
    raise ValueError(f"unknown device choice {choice!r}; choose from {', '.join(DEVICE_CHOICES)}")


def task_availability(manifest: Manifest | None = None) -> dict[str, bool]:
    """Every task LungAI knows, in pipeline order, and whether its weights are installed.

    Args:
        manifest: the weights manifest; ``None`` reads the installed one.
    """
    available = tasks_with_weights(manifest or read_manifest())
    return {task: task in available for task in ALL_TASKS}


@dataclass(frozen=True)
class RunRequest:
    """What one run analyses and where it writes.

    Attributes:
        scan: the scan file (the input volume exported by Slicer).
        output: the output folder to create; it must not exist.
        tasks: tasks to run; the lung mask is always computed.
        device: ``--device`` value (see :func:`device_argument`).
        operating_point: the nodule detector's operating point (``--sensitivity``).
    """

    scan: Path
    output: Path
    tasks: tuple[str, ...]
    device: str = "auto"
    operating_point: str = RUN_OPERATING_POINT


def build_run_command(python: str, request: RunRequest) -> list[str]:
    """The command line of one run, with JSON-lines progress on stdout.

    Args:
        python: the Python interpreter that has ``lungai`` installed (``PythonSlicer``).
        request: what to run.

    Returns:
        Program and arguments.

    Raises:
        ValueError: an unknown task, or one this version cannot run.
    """
    tasks = parse_tasks(list(request.tasks or ()) or ["lungs"])
    return [python, "-m", "lungai.cli", "run", str(request.scan), "-o", str(request.output),
            "--tasks", ",".join(tasks or ("lungs",)), "--device", request.device,
            "--sensitivity", request.operating_point, "--progress", "jsonl"]


#: The detection operating point of a follow-up started from Slicer: the command line's default, so the
#: comparison is the one ``lungai follow-up`` reports (the slider can hide findings, not add any).
FOLLOW_UP_OPERATING_POINT = "balanced"


@dataclass(frozen=True)
class FollowUpRequest:
    """What one follow-up compares and where it writes.

    Attributes:
        prior: the prior scan (exported volume, DICOM folder) or a LungAI output folder of it.
        current: the current scan (exported volume or DICOM folder).
        output: the output folder to create; it must not exist.
        device: ``--device`` value (see :func:`device_argument`).
        interval_days: days between the scans when their files carry no dates; ``None``: from the
            DICOM headers, or unknown.
        force: compare scans whose DICOM PatientIDs differ.
    """

    prior: Path
    current: Path
    output: Path
    device: str = "auto"
    interval_days: int | None = None
    force: bool = False


def build_follow_up_command(python: str, request: FollowUpRequest) -> list[str]:
    """The command line of one follow-up (``lungai follow-up PRIOR CURRENT -o OUT``).

    Args:
        python: the Python interpreter that has ``lungai`` installed (``PythonSlicer``).
        request: what to compare.

    Returns:
        Program and arguments.

    Raises:
        ValueError: a negative interval.
    """
    command = [python, "-m", "lungai.cli", "follow-up", str(request.prior), str(request.current),
               "-o", str(request.output), "--device", request.device, "--sensitivity", FOLLOW_UP_OPERATING_POINT]
    if request.interval_days is not None:
        if request.interval_days < 0:
            raise ValueError(f"the interval between the scans cannot be negative ({request.interval_days} days)")
        command += ["--interval-days", str(request.interval_days)]
    if request.force:
        command.append("--force")
    return command


def selected_tasks(checked: Sequence[str], available: Sequence[str] = ALL_TASKS) -> tuple[str, ...]:
    """The tasks to request from the boxes a user ticked, in pipeline order.

    Args:
        checked: task names whose boxes are ticked.
        available: the tasks that can run (see :func:`task_availability`).

    Returns:
        The available ones among them, in pipeline order; ``("lungs",)`` if none is.
    """
    chosen = tuple(task for task in ALL_TASKS if task in checked and task in available)
    return chosen or ("lungs",)
