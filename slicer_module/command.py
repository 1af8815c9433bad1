"""The command line the Slicer module runs: ``python -m lungai.cli run ... --progress jsonl``.

The module never imports torch: the analysis runs in a separate Python process (Slicer's
``PythonSlicer``), and the module only builds its command line and reads its progress.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lungai.pipeline.config import ALL_TASKS, AVAILABLE_TASKS, parse_tasks

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


def task_availability() -> dict[str, bool]:
    """Every task LungAI knows, in pipeline order, and whether this version can run it."""
    return {task: task in AVAILABLE_TASKS for task in ALL_TASKS}


@dataclass(frozen=True)
class RunRequest:
    """What one run analyses and where it writes.

    Attributes:
        scan: the scan file (the input volume exported by Slicer).
        output: the output folder to create; it must not exist.
        tasks: tasks to run; the lung mask is always computed.
        device: ``--device`` value (see :func:`device_argument`).
    """

    scan: Path
    output: Path
    tasks: tuple[str, ...]
    device: str = "auto"


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
    tasks = parse_tasks(list(request.tasks) or ["lungs"])
    return [python, "-m", "lungai.cli", "run", str(request.scan), "-o", str(request.output),
            "--tasks", ",".join(tasks), "--device", request.device, "--progress", "jsonl"]


def selected_tasks(checked: Sequence[str]) -> tuple[str, ...]:
    """The tasks to request from the boxes a user ticked, in pipeline order.

    Args:
        checked: task names whose boxes are ticked.

    Returns:
        The available ones among them, in pipeline order; ``("lungs",)`` if none is.
    """
    chosen = tuple(task for task in ALL_TASKS if task in checked and task in AVAILABLE_TASKS)
    return chosen or ("lungs",)
