"""Run the analysis stages on one scan and write the outputs atomically.

Reading the scan and its lung mask make the frozen :class:`~lungai.pipeline.stages.ScanContext`;
the stages of the requested tasks (:data:`lungai.pipeline.config.TASKS`, in that order) each
take it and return their result (:data:`STAGES`), and the findings are built from the results
once, complete. The model stages get their weights through
:class:`lungai.pipeline.model_store.ModelStore`, all resolved before anything is computed or
written. Outputs are written to a hidden temporary folder beside the output and moved into place
only when every stage has succeeded, so a failed or interrupted run leaves nothing behind.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import SimpleITK as sitk

from lungai import __version__, labels
from lungai.errors import OutputExistsError
from lungai.inference.device import resolve_device
from lungai.io.dicom_seg import SegReferenceError, write_dicom_seg
from lungai.io.findings import (
    DetectionInfo,
    Findings,
    InputFile,
    InputInfo,
    LungVolume,
    Provenance,
    RunInfo,
    utc_timestamp,
    write_findings_json,
    write_nodules_csv,
)
from lungai.io.output import check_output_target, staged_output
from lungai.io.reader import to_original_orientation
from lungai.io.report_html import write_report_html
from lungai.io.report_pdf import write_report_pdf
from lungai.io.run_log import RunLog
from lungai.io.segmentation import write_segmentation_files
from lungai.io.volume import CTVolume
from lungai.pipeline.availability import default_tasks
from lungai.pipeline.config import TASKS_BY_NAME, RunConfig, describe_call, with_needed
from lungai.pipeline.model_store import ModelStore, load_run_manifest, require_weights
from lungai.pipeline.progress import ProgressCallback, ProgressEvent, ignore_progress
from lungai.pipeline.stages import (
    EmphysemaResult,
    Lesions,
    ScanContext,
    StepCallback,
    detection_info,
    emphysema_stage,
    lungs_stage,
    malignancy_stage,
    nodules_stage,
    read_stage,
)

logger = logging.getLogger(__name__)


_Result = TypeVar("_Result")


@dataclass(frozen=True)
class TaskResults:
    """What the task stages have returned so far.

    Attributes:
        lesions: the nodules stage's lesions (rated by the malignancy stage); none without the nodules task.
        emphysema: the emphysema stage's result; ``None`` without the emphysema task.
    """

    lesions: Lesions = Lesions()
    emphysema: EmphysemaResult | None = None


TaskStage = Callable[[ScanContext, TaskResults], TaskResults]
"""A task's stage as the runner calls it: the context and the results so far in, the results with its own out."""


def _nodules(context: ScanContext, results: TaskResults) -> TaskResults:
    return replace(results, lesions=nodules_stage(context))


def _malignancy(context: ScanContext, results: TaskResults) -> TaskResults:
    return replace(results, lesions=malignancy_stage(context, results.lesions))


def _emphysema(context: ScanContext, results: TaskResults) -> TaskResults:
    return replace(results, emphysema=emphysema_stage(context))


#: The stages that make the scan context, run for every task: reading the scan and its lung mask
#: (the ``lungs`` task's stage).
CONTEXT_STAGES: tuple[str, ...] = ("read", "lungs")
#: The function of each task stage that is not a context stage (``Task.stage``).
STAGES: dict[str, TaskStage] = {"nodules": _nodules, "malignancy": _malignancy, "emphysema": _emphysema}


@dataclass
class RunResult:
    """A finished run: its findings and where the outputs are."""

    findings: Findings
    output: Path


def plan_stages(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """The stage names for the requested tasks, in order (reading and the lung mask always run)."""
    stages = [TASKS_BY_NAME[name].stage for name in TASKS_BY_NAME if name in tasks]
    return CONTEXT_STAGES + tuple(stage for stage in stages if stage is not None and stage not in CONTEXT_STAGES)


def _findings(context: ScanContext, tasks: tuple[str, ...], results: TaskResults, inputs: list[InputFile],
              timings: dict[str, float], started: str) -> Findings:
    """The run's findings, complete but for the write stage's timing (and a DICOM SEG warning)."""
    mask = context.lungs
    lungs = {"right": LungVolume(volume_ml=mask.right_volume_ml), "left": LungVolume(volume_ml=mask.left_volume_ml),
             "total": LungVolume(volume_ml=mask.total_volume_ml)}
    run = RunInfo(lungai_version=__version__, tasks=[name for name in timings if name not in ("read", "write")],
                  device=context.models.device, started_utc=started, finished_utc=utc_timestamp(),
                  weights=context.models.weights, timings_s=dict(timings))
    detection = detection_info(context.config) if "nodules" in tasks else None
    emphysema = None if results.emphysema is None else results.emphysema.record
    warnings = [*context.volume.warnings, *mask.warnings, *results.lesions.warnings,
                *(() if emphysema is None else emphysema.warnings)]
    return Findings(input=InputInfo.from_volume(context.volume), lungs=lungs, emphysema=emphysema,
                    nodules=list(results.lesions.nodules), detection=detection, warnings=warnings, run=run,
                    provenance=_provenance(context.config, tasks, inputs, detection))


def _provenance(config: RunConfig, tasks: tuple[str, ...], inputs: list[InputFile],
                detection: DetectionInfo | None) -> Provenance:
    """How the run was asked for (command or API call, operating point, limits, tasks) and what it read."""
    return Provenance(command=config.command or describe_call(config),
                      operating_point=None if detection is None else detection.operating_point,
                      threshold=None if detection is None else detection.threshold,
                      expected_false_positives_per_scan=None if detection is None else detection.expected_fp_per_scan,
                      max_nodules=config.max_nodules, tasks=list(tasks), inputs=inputs)


def label_image(lung_labels: sitk.Image, lesions: Lesions) -> sitk.Image:
    """Lungs, then lesion ``i`` (nodule or mass) as ``NODULE_BASE_VALUE + i``."""
    array = sitk.GetArrayFromImage(lung_labels).astype(np.uint8)
    for nodule, segmented in zip(lesions.nodules, lesions.masks):
        region = array[segmented.box]
        region[segmented.mask] = labels.nodule(nodule.id).value
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(lung_labels)
    return image


def _write(context: ScanContext, results: TaskResults, findings: Findings, staging: Path) -> Findings:
    """Write every output but ``findings.json``; returns the findings with a DICOM SEG warning, if any."""
    volume = context.volume
    name = volume.name
    emphysema = results.emphysema
    lung_labels = context.lungs.labels if emphysema is None or emphysema.lung_labels is None else emphysema.lung_labels
    lps_labels = label_image(lung_labels, results.lesions)
    structures = labels.with_nodules(len(findings.nodules), [n.kind for n in findings.nodules])
    labelled = to_original_orientation(lps_labels, volume)
    write_segmentation_files(labelled, structures, staging, name)
    write_nodules_csv(findings.nodules, staging / "nodules.csv")
    if volume.dicom_headers:
        problem = _write_dicom_seg(volume, lps_labels, structures, staging / f"{name}.seg.dcm")
        if problem is not None:
            findings = replace(findings, warnings=[*findings.warnings, problem])
    write_report_html(findings, volume, lps_labels, staging / "report.html")
    write_report_pdf(staging / "report.html", staging / "report.pdf")
    return findings


def _write_dicom_seg(volume: CTVolume, lps_labels: sitk.Image, structures: tuple[labels.Structure, ...],
                     path: Path) -> str | None:
    """Write the DICOM SEG; the warning for the findings when the source series cannot be referenced."""
    try:
        write_dicom_seg(lps_labels, volume, structures, path)
    except SegReferenceError as error:
        message = f"no DICOM SEG written: {error}"
        logger.warning(message)
        return message
    return None


class _FinalPaths(logging.Filter):
    """Names the final output folder in log messages instead of the temporary one it is staged in."""

    def __init__(self, staging: Path, output: Path) -> None:
        super().__init__()
        self.staging, self.output = str(staging), str(Path(output).absolute())

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.staging in message:
            record.msg, record.args = message.replace(self.staging, self.output), None
        return True


@contextmanager
def _run_log(staging: Path, output: Path):
    """Copy everything LungAI logs during the run (DEBUG and up) into ``run.log`` with
    :class:`~lungai.io.run_log.RunLog`, paths named as they will be."""
    final_paths = _FinalPaths(staging, output)
    with RunLog(staging / "run.log", level=logging.DEBUG):
        handlers = list(logging.getLogger("lungai").handlers)
        for each in handlers:
            each.addFilter(final_paths)
        try:
            yield
        finally:
            for each in handlers:
                each.removeFilter(final_paths)


def _refuse_output_holding_input(config: RunConfig) -> None:
    """An output folder that is, or contains, the input would destroy it on --overwrite."""
    scan, output = Path(config.input).absolute(), Path(config.output).absolute()
    if scan == output or output in scan.parents:
        raise OutputExistsError(f"output folder {output} contains the input scan",
                                "choose an output folder outside the input with -o")


def model_store(config: RunConfig) -> ModelStore:
    """An empty model store for ``config``'s device and weights manifest, to reuse across runs.

    Example (each model loads once for the whole loop)::

        store = model_store(RunConfig(input=Path(), output=Path()))
        for scan in scans:
            run_pipeline(RunConfig(input=scan, output=out / scan.stem), models=store)
    """
    return ModelStore(device=resolve_device(config.device), manifest=load_run_manifest(config.manifest))


def run_pipeline(config: RunConfig, on_event: ProgressCallback = ignore_progress,
                 models: ModelStore | None = None) -> RunResult:
    """Analyse one scan and write its outputs.

    Args:
        config: what to run and where to write.
        on_event: receives a :class:`ProgressEvent` as each stage starts and finishes.
        models: an already-loaded store (:func:`model_store`) to reuse; its device and manifest
            then replace ``config.device`` and ``config.manifest``. ``None``: a new store.

    Returns:
        The findings and the output folder.

    Raises:
        LungAIError: for every problem a user can cause (see :mod:`lungai.errors`); nothing
            is left in the output location then.
    """
    start = time.perf_counter()
    started = utc_timestamp()
    check_output_target(config.output, config.overwrite)
    _refuse_output_holding_input(config)
    models = model_store(config) if models is None else models
    models.start_run()
    device, manifest = models.device, models.manifest
    tasks = with_needed(config.tasks) if config.tasks is not None else default_tasks(manifest)
    require_weights(tasks, models)  # missing or damaged weights fail here, before any work
    stages = plan_stages(tasks)
    total = len(stages) + 1
    on_event(ProgressEvent(event="start", total=total, message=f"lungai {__version__} on {config.input}",
                           data={"input": str(config.input), "output": str(config.output)}))

    def emit(index: int, stage: str, status: str, message: str = "", part: float = 0.0) -> None:
        done = index if status == "finished" else index - 1 + min(max(part, 0.0), 1.0)
        on_event(ProgressEvent(event="stage", stage=stage, status=status, index=index, total=total,
                               fraction=done / total, elapsed_s=time.perf_counter() - start, message=message))

    timings: dict[str, float] = {}

    def run_stage(index: int, name: str, stage: Callable[[StepCallback], _Result]) -> _Result:
        emit(index, name, "started")
        t0 = time.perf_counter()
        result = stage(functools.partial(emit, index, name, "running"))
        timings[name] = round(time.perf_counter() - t0, 3)
        logger.info("stage %s finished in %.2f s", name, timings[name])
        emit(index, name, "finished")
        return result

    with staged_output(config.output, config.overwrite) as staging, _run_log(staging, config.output):
        logger.info("lungai %s: %s -> %s (tasks %s, device %s)", __version__, config.input, config.output,
                    ",".join(tasks), device)
        scan = run_stage(1, "read", lambda _step: read_stage(config))
        lungs = run_stage(2, "lungs", lambda _step: lungs_stage(scan.volume))
        context = ScanContext(config=config, models=models, volume=scan.volume, lungs=lungs)
        results = TaskResults()
        for index, name in enumerate(stages[len(CONTEXT_STAGES):], start=len(CONTEXT_STAGES) + 1):
            results = run_stage(index, name, functools.partial(_run_task_stage, STAGES[name], context, results))
        emit(total, "write", "started")
        t0 = time.perf_counter()
        findings = _write(context, results, _findings(context, tasks, results, scan.inputs, timings, started), staging)
        timings["write"] = round(time.perf_counter() - t0, 3)
        findings = replace(findings, run=replace(findings.run, timings_s=dict(timings)))
        write_findings_json(findings, staging / "findings.json")
        emit(total, "write", "finished")
    on_event(ProgressEvent(event="done", index=total, total=total, fraction=1.0,
                           elapsed_s=time.perf_counter() - start, data={"output": str(config.output)}))
    return RunResult(findings=findings, output=config.output)


def _run_task_stage(stage: TaskStage, context: ScanContext, results: TaskResults, step: StepCallback) -> TaskResults:
    """Run a task stage on the context with its progress callback."""
    return stage(replace(context, step=step), results)
