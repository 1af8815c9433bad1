"""What a run is asked to do: one dataclass, shared by the CLI, the Python API and Slicer."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

#: Every task LungAI knows, in pipeline order.
ALL_TASKS: tuple[str, ...] = ("lungs", "nodules", "malignancy", "emphysema")
#: Tasks this version implements; a run also needs their models' weights (:data:`TASK_MODELS`).
AVAILABLE_TASKS: tuple[str, ...] = ALL_TASKS
#: The weights each task needs (names in the weights manifest).
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "lungs": (),
    "nodules": ("convlstm_nodule", "resunet3d"),
    "malignancy": ("measured_nodule",),
    "emphysema": (),  # densitometry; convlstm_scanner only with RunConfig.emphysema_probability (or validated weights)
}
#: Tasks earlier versions had, and why they are gone (``parse_tasks`` says so instead of "unknown").
REMOVED_TASKS: dict[str, str] = {
    "tumour": ("the whole-scan tumour task was removed: it outlined hila and mediastinum; masses (lesions "
               "over 30 mm) are found and segmented by the nodules task"),
}
#: Tasks that need another task's results.
TASK_NEEDS: dict[str, tuple[str, ...]] = {"malignancy": ("nodules",)}
#: The nodule detector's operating points (``lungai.pipeline.detection.OPERATING_POINTS``).
SENSITIVITIES: tuple[str, ...] = ("high", "balanced", "specific")


@dataclass
class RunConfig:
    """Settings of one ``lungai run``.

    Attributes:
        input: scan path (DICOM folder or zip, NRRD, NIfTI, MetaImage).
        output: output folder (created; must not exist unless ``overwrite``).
        tasks: tasks to run; the lung mask is always computed because every task needs it.
            ``None``: every task whose weights are installed (see
            :func:`lungai.pipeline.availability.default_tasks`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        overwrite: replace an existing output folder (only once the new one is complete).
        force: skip soft input checks (e.g. intensities that do not look like HU).
        series_uid: DICOM series to analyse; default the CT series with most slices.
        include_patient_id: copy the DICOM PatientID into ``findings.json``.
        sensitivity: nodule detection operating point, one of :data:`SENSITIVITIES`.
        detection_threshold: a detection score threshold; overrides ``sensitivity``.
        max_nodules: at most this many detections (the strongest) are segmented and reported.
        manifest: the weights manifest; ``None`` uses the one installed with LungAI.
        emphysema_map: label the lung voxels below -950 HU as the low-attenuation segment
            (``labels.LOW_ATTENUATION``) in the segmentation outputs.
        emphysema_probability: with the emphysema task, also run the ``convlstm_scanner`` and report
            its probability when its weights are demonstration weights (the shipped ones are: trained
            on simulated emphysema, not validated on real scans), with that caveat; the run then
            needs those weights. Weights not marked as demonstration weights run without it.
        command: how the run was asked for, recorded in ``findings.json`` ``provenance.command``:
            the command line for ``lungai run``; ``None`` for a Python API call, recorded as
            :func:`describe_call` describes it.
    """

    input: Path
    output: Path
    tasks: tuple[str, ...] | None = None
    device: str = "auto"
    overwrite: bool = False
    force: bool = False
    series_uid: str | None = None
    include_patient_id: bool = False
    sensitivity: str = "balanced"
    detection_threshold: float | None = None
    max_nodules: int = 30
    manifest: Path | None = None
    emphysema_map: bool = False
    emphysema_probability: bool = False
    command: str | None = None


def describe_call(config: RunConfig) -> str:
    """``python API: run_pipeline(RunConfig(...))`` with the settings that differ from the defaults."""
    defaults = RunConfig(input=Path(), output=Path())
    settings = []
    for each in fields(RunConfig):
        value = getattr(config, each.name)
        if each.name == "command" or (each.name not in ("input", "output") and value == getattr(defaults, each.name)):
            continue
        settings.append(f"{each.name}={str(value) if isinstance(value, Path) else value!r}")
    return f"python API: run_pipeline(RunConfig({', '.join(settings)}))"


def with_needed(tasks: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``tasks`` plus the tasks they need (malignancy needs nodules), in pipeline order."""
    wanted = set(tasks)
    for task in tasks:
        wanted.update(TASK_NEEDS.get(task, ()))
    return tuple(t for t in ALL_TASKS if t in wanted)


def parse_tasks(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    """Validate task names (comma-separated or a sequence).

    Returns:
        The tasks in pipeline order, with the tasks they need; ``None`` for ``None``, empty
        or ``all``: every task whose weights are installed, decided when the run starts.

    Raises:
        ValueError: an unknown task, or one this version cannot run.
    """
    if names is None:
        return None
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    requested = [n.lower() for n in names]
    if not requested or requested == ["all"]:
        return None
    removed = [REMOVED_TASKS[n] for n in requested if n in REMOVED_TASKS]
    if removed:
        raise ValueError("; ".join(removed))
    unknown = [n for n in requested if n not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(ALL_TASKS)}")
    missing = [n for n in requested if n not in AVAILABLE_TASKS]
    if missing:
        raise ValueError(f"task(s) {', '.join(missing)} not available in this version "
                         f"(available: {', '.join(AVAILABLE_TASKS)})")
    return with_needed(requested)
