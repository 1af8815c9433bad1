"""What a run is asked to do: one dataclass, shared by the CLI, the Python API and Slicer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Every task LungAI knows, in pipeline order.
ALL_TASKS: tuple[str, ...] = ("lungs", "nodules", "malignancy", "tumour", "emphysema")
#: Tasks this version can run (the others need models that are not shipped yet).
AVAILABLE_TASKS: tuple[str, ...] = ("lungs", "emphysema")


@dataclass
class RunConfig:
    """Settings of one ``lungai run``.

    Attributes:
        input: scan path (DICOM folder or zip, NRRD, NIfTI, MetaImage).
        output: output folder (created; must not exist unless ``overwrite``).
        tasks: tasks to run; the lung mask is always computed because every task needs it.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        overwrite: replace an existing output folder (only once the new one is complete).
        force: skip soft input checks (e.g. intensities that do not look like HU).
        series_uid: DICOM series to analyse; default the CT series with most slices.
        include_patient_id: copy the DICOM PatientID into ``findings.json``.
    """

    input: Path
    output: Path
    tasks: tuple[str, ...] = AVAILABLE_TASKS
    device: str = "auto"
    overwrite: bool = False
    force: bool = False
    series_uid: str | None = None
    include_patient_id: bool = False


def parse_tasks(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Validate task names (comma-separated or a sequence); ``None`` or ``all`` = all available.

    Raises:
        ValueError: an unknown task, or one this version cannot run yet.
    """
    if names is None:
        return AVAILABLE_TASKS
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    requested = [n.lower() for n in names]
    if not requested or requested == ["all"]:
        return AVAILABLE_TASKS
    unknown = [n for n in requested if n not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(ALL_TASKS)}")
    missing = [n for n in requested if n not in AVAILABLE_TASKS]
    if missing:
        raise ValueError(f"task(s) {', '.join(missing)} not available in this version "
                         f"(available: {', '.join(AVAILABLE_TASKS)})")
    return tuple(t for t in ALL_TASKS if t in requested)
