"""What a run can be asked to do: the task table, and one dataclass shared by the CLI, the Python API and Slicer.

Every fact about a task (its models, the tasks it needs, its stage, whether it is experimental or
was removed) is in :data:`TASKS`; the other names here are derived from it. Torch-free, so the
Slicer module and the command line can read it before anything heavy is imported.
"""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass, fields
from pathlib import Path

#: The nodule detector's false-positive classifier (weights manifest name).
DETECTOR_MODEL = "convlstm_nodule"
#: The nodule segmentation network.
SEGMENTATION_MODEL = "resunet3d"
#: The malignancy and characteristics scorer.
MEASURED_MODEL = "measured_nodule"
#: The volume-level emphysema network (a copy of :data:`lungai.inference.emphysema.SCANNER_MODEL`,
#: which the inference layer cannot import from here; a test keeps the two equal).
SCANNER_MODEL = "convlstm_scanner"


@dataclass(frozen=True)
class ModelUse:
    """A network a task runs, and what for.

    Attributes:
        name: the weights manifest name.
        role: what the task uses it for (``lungai info --models``).
    """

    name: str
    role: str


@dataclass(frozen=True)
class Task:
    """One task of ``lungai run``.

    Attributes:
        name: its name (``--tasks``, ``findings.json`` ``provenance.tasks``).
        stage: the pipeline stage that computes it (``run.tasks`` and ``run.timings_s`` of
            ``findings.json``, progress events); :data:`lungai.pipeline.runner.STAGES` maps each
            stage to its function. ``None`` for a removed task.
        models: the weights it always needs; a run asking for the task fails before any work
            when one is missing.
        optional_models: weights it runs only in some runs (asked for, or validated weights);
            a run does not require them.
        needs: tasks whose results it uses; asking for the task adds them.
        experimental: run only when asked for by name (``--tasks``), never by default.
        removed: why an earlier version's task is gone (``None``: the task exists); asking for
            it fails with this reason instead of "unknown task".
    """

    name: str
    stage: str | None
    models: tuple[ModelUse, ...] = ()
    optional_models: tuple[ModelUse, ...] = ()
    needs: tuple[str, ...] = ()
    experimental: bool = False
    removed: str | None = None

    @property
    def model_names(self) -> tuple[str, ...]:
        """The names of :attr:`models`."""
        return tuple(use.name for use in self.models)


#: Every task LungAI knows, in pipeline order (a task's stage runs after those of the tasks it needs).
TASKS: tuple[Task, ...] = (
    Task("lungs", stage="lungs"),
    Task("nodules", stage="nodules", models=(
        ModelUse(DETECTOR_MODEL, "false-positive classifier, scores the ROI around each blob candidate"),
        ModelUse(SEGMENTATION_MODEL, "segments each detected nodule"))),
    Task("malignancy", stage="malignancy", needs=("nodules",), models=(
        ModelUse(MEASURED_MODEL, "radiologists' suspicion on LIDC and characteristics, from measured features"),)),
    # densitometry; the scanner only with RunConfig.emphysema_probability (or validated weights)
    Task("emphysema", stage="emphysema", optional_models=(
        ModelUse(SCANNER_MODEL, "probability, only with --emphysema-probability (demonstration weights)"),)),
    Task("tumour", stage=None, removed=(
        "the whole-scan tumour task was removed: it outlined hila and mediastinum; masses (lesions over 30 mm) "
        "are found and segmented by the nodules task")),
)

#: The shipped networks ``lungai run`` does not use, and what they are for.
MODELS_NOT_RUN: dict[str, str] = {
    "resnet50_3d": "not used by lungai run (malignancy CNN, below the measured scorer on validation)",
    "nodule_cnn2d": "not used by lungai run (malignancy CNN, below the measured scorer on validation)",
    "r3d_denseunet": "not used by lungai run (tumour segmentation model, `lungai evaluate nodule-seg`)",
}

#: The tasks this version runs, by name, in pipeline order.
TASKS_BY_NAME: dict[str, Task] = {task.name: task for task in TASKS if task.removed is None}
#: Their names.
ALL_TASKS: tuple[str, ...] = tuple(TASKS_BY_NAME)
#: Tasks earlier versions had, and why they are gone.
REMOVED_TASKS: dict[str, str] = {task.name: task.removed for task in TASKS if task.removed is not None}
#: What ``lungai run`` uses each shipped network for (``lungai info --models``).
RUN_ROLES: dict[str, str] = {
    **{use.name: f"{task.name}: {use.role}" for task in TASKS_BY_NAME.values()
       for use in (*task.models, *task.optional_models)},
    **MODELS_NOT_RUN,
}
#: The nodule detector's operating points, by name (``--sensitivity``; their thresholds are in
#: :data:`lungai.pipeline.operating_points.OPERATING_POINTS`).
OPERATING_POINT_NAMES: tuple[str, ...] = ("high", "balanced", "specific")


@dataclass(frozen=True)
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
        operating_point: the nodule detector's operating point, one of :data:`OPERATING_POINT_NAMES`
            (``--sensitivity``).
        detection_threshold: a detection score threshold; overrides ``operating_point``.
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
        sensitivity: the former name of ``operating_point``, still accepted (with a
            ``DeprecationWarning``); not stored.
    """

    input: Path
    output: Path
    tasks: tuple[str, ...] | None = None
    device: str = "auto"
    overwrite: bool = False
    force: bool = False
    series_uid: str | None = None
    include_patient_id: bool = False
    operating_point: str = "balanced"
    detection_threshold: float | None = None
    max_nodules: int = 30
    manifest: Path | None = None
    emphysema_map: bool = False
    emphysema_probability: bool = False
    command: str | None = None
    sensitivity: InitVar[str | None] = None

    def __post_init__(self, sensitivity: str | None) -> None:
        if sensitivity is not None:
            warnings.warn("RunConfig(sensitivity=...) is now RunConfig(operating_point=...)", DeprecationWarning,
                          stacklevel=3)
            object.__setattr__(self, "operating_point", sensitivity)


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
    pending = list(tasks)
    while pending:
        for needed in TASKS_BY_NAME[pending.pop()].needs:
            if needed not in wanted:
                wanted.add(needed)
                pending.append(needed)
    return tuple(name for name in ALL_TASKS if name in wanted)


def required_models(tasks: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """``(task, model)`` for every model the tasks (with the tasks they need) cannot run without, in order."""
    return [(name, model) for name in with_needed(tasks) for model in TASKS_BY_NAME[name].model_names]


def parse_tasks(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    """Validate task names (comma-separated or a sequence).

    Returns:
        The tasks in pipeline order, with the tasks they need; ``None`` for ``None``, empty
        or ``all``: every task whose weights are installed, decided when the run starts.

    Raises:
        ValueError: an unknown task, or one this version no longer has.
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
    unknown = [n for n in requested if n not in TASKS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(ALL_TASKS)}")
    return with_needed(requested)
