"""Run the analysis stages on one scan and write the outputs atomically.

Stages run in a fixed order (read -> lungs -> nodules -> malignancy -> emphysema ->
write); the model stages get their weights through :class:`lungai.pipeline.models.ModelStore`,
all resolved before anything is computed or written. Outputs are written to a
hidden temporary folder beside the output and moved into place only when every stage has
succeeded, so a failed or interrupted run leaves nothing behind.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai import __version__, labels
from lungai.errors import OutputExistsError, WeightsError
from lungai.inference.device import resolve_device
from lungai.inference.voi_segmentation import recorded_inference
from lungai.io.dicom_seg import SegReferenceError, write_dicom_seg
from lungai.io.findings import (
    Densitometry,
    DetectionInfo,
    Emphysema,
    Findings,
    InputFile,
    InputInfo,
    LungVolume,
    Nodule,
    Provenance,
    RunInfo,
    utc_timestamp,
    write_findings_json,
    write_nodules_csv,
)
from lungai.io.output import check_output_target, staged_output
from lungai.io.provenance import input_fingerprints
from lungai.io.reader import ReadOptions, read_scan, to_original_orientation
from lungai.io.report_html import write_report_html
from lungai.io.report_pdf import write_report_pdf
from lungai.io.segmentation import write_segmentation_files
from lungai.io.volume import CTVolume
from lungai.pipeline.availability import default_tasks
from lungai.pipeline.config import RunConfig, describe_call, with_needed
from lungai.pipeline.detection import Detection, DetectionConfig, detect_nodules, threshold_of
from lungai.pipeline.lesion_record import nodule_finding
from lungai.pipeline.malignancy import MEASURED_MODEL, apply_rating, nodules_rating
from lungai.pipeline.models import ModelStore, load_run_manifest, require_weights
from lungai.pipeline.nodules import DEFAULT_THRESHOLD, SEGMENTATION_MODEL, SegmentedNodule, segment_detections
from lungai.pipeline.operating_points import (
    DETECTOR,
    KNOWN_LIMITATIONS,
    OPERATING_POINTS,
    is_categorised,
    operating_point,
    points_from_inference,
)
from lungai.pipeline.progress import ProgressCallback, ProgressEvent, ignore_progress
from lungai.preprocessing.candidates import Candidate, find_candidates
from lungai.preprocessing.densitometry import measure_densitometry
from lungai.preprocessing.lesion_region import LesionRegion, lesion_region, mass_mask
from lungai.preprocessing.lung_mask import LungMask, segment_lungs
from lungai.preprocessing.measurements import lung_z_ranges, measure_lesion
from lungai.preprocessing.roi import roi_spec

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


StepCallback = Callable[[str, float], None]
"""Reports progress inside a stage: what it is doing, and the part of the stage done (0..1)."""


@dataclass
class RunState:
    """What the stages pass along."""

    config: RunConfig
    device: str
    staging: Path
    models: ModelStore
    tasks: tuple[str, ...] = ()
    volume: CTVolume | None = None
    lungs: LungMask | None = None
    emphysema: Emphysema | None = None
    nodules: list[Nodule] = field(default_factory=list)
    nodule_masks: list[SegmentedNodule] = field(default_factory=list)
    candidates: list[Candidate] | None = None
    lesion_region: LesionRegion | None = None
    warnings: list[str] = field(default_factory=list)
    inputs: list[InputFile] = field(default_factory=list)
    step: StepCallback = field(default=lambda _message, _part: None)


@dataclass
class RunResult:
    """A finished run: its findings and where the outputs are."""

    findings: Findings
    output: Path


def _read(state: RunState) -> None:
    options = ReadOptions(series_uid=state.config.series_uid,
                          include_patient_id=state.config.include_patient_id, force=state.config.force)
    state.volume = read_scan(state.config.input, options)
    state.warnings.extend(state.volume.warnings)
    state.inputs = input_fingerprints(state.volume, Path(state.config.input))


def _lungs(state: RunState) -> None:
    assert state.volume is not None
    state.lungs = segment_lungs(state.volume.image)  # logs its warnings itself
    state.warnings.extend(state.lungs.warnings)


def _candidates(state: RunState) -> list[Candidate]:
    """The scan's blob candidates (the detection's filter), found once per run."""
    assert state.volume is not None and state.lungs is not None
    if state.candidates is None:
        state.candidates = find_candidates(state.volume.image, state.lungs.labels,
                                           _detection_config(state.config).candidates)
    return state.candidates


def _detection_config(config: RunConfig) -> DetectionConfig:
    return DetectionConfig(operating_point=config.sensitivity, threshold=config.detection_threshold)


def describe_operating_point(config: RunConfig) -> str:
    """The nodule operating point in words, with its expected false positives per scan."""
    point = operating_point(config.sensitivity)
    threshold = threshold_of(_detection_config(config))
    if config.detection_threshold is not None:
        return f"nodule detection score >= {threshold:.2f} (set by --detection-threshold)"
    fp = ("not calibrated yet" if math.isnan(point.expected_fp_per_scan)
          else f"{point.expected_fp_per_scan:.1f} expected false positives per scan")
    return f"nodule operating point {config.sensitivity}: score >= {threshold:.2f}, {fp}"


def _lesion_detections(state: RunState) -> list[Detection]:
    """Blob detections at the operating point, and the masses of the lesion search region."""
    assert state.volume is not None and state.lungs is not None and state.lesion_region is not None
    image = state.volume.image
    state.step("finding blob candidates", 0.05)
    candidates = _candidates(state)
    state.step(f"scoring {len(candidates)} candidates", 0.15)
    _check_detector_points(state)
    detections = detect_nodules(image, state.lungs.labels, _detection_config(state.config), state.device,
                                classifier=state.models.get("convlstm_nodule"), candidates=candidates)
    if len(detections) > state.config.max_nodules:
        message = (f"{len(detections)} nodule detections at this operating point; only the "
                   f"{state.config.max_nodules} strongest were segmented (--max-nodules)")
        logger.warning(message)
        state.warnings.append(message)
        detections = detections[: state.config.max_nodules]
    masses = [Detection(m.centre_lps_mm, m.core_radius_mm, None, source="mass", extent_mm_zyx=m.extent_mm_zyx)
              for m in state.lesion_region.masses]
    return masses + detections


def _check_detector_points(state: RunState) -> None:
    """Warn when the detector weights in use record other operating points than the installed
    detector's, which are the ones applied (e.g. weights of another manifest)."""
    try:
        recorded = points_from_inference(state.models.inference(DETECTOR))
    except ValueError:
        recorded = None
    if recorded != OPERATING_POINTS:
        message = (f"the {DETECTOR} weights in use record {'other' if recorded else 'no'} operating points than "
                   "the installed detector's, whose thresholds and expected false positives apply")
        logger.warning(message)
        state.warnings.append(message)


def detection_info(config: RunConfig) -> DetectionInfo:
    """The operating point of a run's lesion detection, with its expected cost and known weak spots."""
    threshold = threshold_of(_detection_config(config))
    limits = list(KNOWN_LIMITATIONS)
    if config.detection_threshold is not None:
        return DetectionInfo("custom", round(threshold, 4), known_limitations=limits)
    point = operating_point(config.sensitivity)
    fp = None if math.isnan(point.expected_fp_per_scan) else point.expected_fp_per_scan
    return DetectionInfo(config.sensitivity, point.threshold, point.sensitivity, fp, limits)


def _time_left(elapsed_s: float, done: int, total: int) -> str:
    """``, about N s left`` at the pace so far (detections differ in cost: a rough estimate), or nothing."""
    if done >= total or done == 0:
        return ""
    return f", about {elapsed_s / done * (total - done):.0f} s left"


def _nodules(state: RunState) -> None:
    assert state.volume is not None and state.lungs is not None
    image = state.volume.image
    state.models.check_roi(SEGMENTATION_MODEL, roi_spec(SEGMENTATION_MODEL))
    logger.info("%s", describe_operating_point(state.config))
    state.step("finding the lesion search region and masses", 0.0)
    state.lesion_region = lesion_region(image, state.lungs.labels)
    detections = _lesion_detections(state)
    hu = sitk.GetArrayViewFromImage(image)
    lung_labels = sitk.GetArrayViewFromImage(state.lungs.labels)
    try:
        inference = recorded_inference(state.models.inference(SEGMENTATION_MODEL), DEFAULT_THRESHOLD)
    except ValueError as exc:
        raise WeightsError(f"{SEGMENTATION_MODEL} weights: {exc}", "reinstall or re-release the weights") from None
    region = state.lesion_region.region
    candidates = {m.centre_lps_mm: m for m in state.lesion_region.masses}

    def mass_segmenter(detection: Detection) -> SegmentedNodule:
        box, mask = mass_mask(candidates[detection.centre_lps_mm], image, region)
        return SegmentedNodule(detection, box, mask)

    masses = sum(detection.source == "mass" for detection in detections)
    state.step(f"segmenting {len(detections)} detections ({masses} by the mass rule)", 0.3)
    started = time.perf_counter()

    def report_segmented(done: int, total: int) -> None:
        state.step(f"segmented {done} of {total} detections{_time_left(time.perf_counter() - started, done, total)}",
                   0.3 + 0.6 * done / total)

    state.nodule_masks = segment_detections(state.models.get(SEGMENTATION_MODEL), hu, image, detections, inference,
                                            region, mass_segmenter, report_segmented)
    z_ranges = lung_z_ranges(lung_labels)
    for index, segmented in enumerate(state.nodule_masks, start=1):
        state.step(f"measuring lesion {index} of {len(state.nodule_masks)}",
                   0.9 + 0.1 * (index - 1) / len(state.nodule_masks))
        measured = measure_lesion(segmented.mask, hu, lung_labels, image, segmented.box, z_ranges)
        detection = segmented.detection
        nodule = nodule_finding(index, measured, image, detection.score, detection.source)
        state.nodules.append(nodule)
    logger.info("nodules: %d lesions (%d masses) of %d detections", len(state.nodules),
                sum(n.kind == "mass" for n in state.nodules), len(detections))


def _malignancy(state: RunState) -> None:
    assert state.volume is not None
    hu = sitk.GetArrayViewFromImage(state.volume.image)
    rated = [(nodule, mask) for nodule, mask in zip(state.nodules, state.nodule_masks) if is_categorised(nodule)]
    ratings = nodules_rating(state.models, hu, state.volume.image, [mask for _, mask in rated])
    settings = state.models.inference(MEASURED_MODEL) if ratings else {}
    for (nodule, _), rating in zip(rated, ratings):
        apply_rating(nodule, rating, settings)


def _emphysema(state: RunState) -> None:
    """Densitometry per lung with this scan's reliability warnings; the scanner's probability; the optional map.

    The scanner runs when asked for (``emphysema_probability``: its weights are then required) or
    when its weights are not demonstration weights (then missing weights only cost a warning);
    shipped demonstration weights are never loaded otherwise.
    """
    from dataclasses import replace

    from lungai.inference.emphysema import (
        SCANNER_MODEL,
        disagreement_warning,
        emphysema_probability,
        probability_caveat,
        scanner_by_default,
        with_low_attenuation,
    )
    from lungai.preprocessing.densitometry import densitometry_notes, densitometry_warnings, describe_acquisition
    from lungai.weights.resolver import weights_info

    assert state.volume is not None and state.lungs is not None
    image, lung_labels = state.volume.image, state.lungs.labels
    measured = measure_densitometry(image, lung_labels).to_dict()
    acquisition = describe_acquisition(state.volume)
    emphysema = state.emphysema = Emphysema(densitometry={
        region: Densitometry(laa_950_percent=values["laa_950_percent"], laa_910_percent=values["laa_910_percent"],
                             laa_856_percent=values["laa_856_percent"], perc15_hu=values["perc15_hu"])
        for region, values in measured.items() if values is not None},
        warnings=densitometry_warnings(acquisition), notes=densitometry_notes(acquisition))
    manifest, asked = state.models.manifest, state.config.emphysema_probability
    if asked and SCANNER_MODEL not in manifest.models:
        raise WeightsError(f"--emphysema-probability needs the {SCANNER_MODEL} weights, which the weights manifest "
                           "does not list", "run without --emphysema-probability (`lungai weights list` shows what "
                           "this installation has)")
    if asked or scanner_by_default(manifest):
        try:
            model = state.models.get(SCANNER_MODEL)
        except WeightsError as error:
            if asked:
                raise
            emphysema.warnings.append(f"emphysema model {SCANNER_MODEL} not run, densitometry only ({error.problem})")
        else:
            emphysema.model_probability = emphysema_probability(model, image, lung_labels, state.device)
            emphysema.model = weights_info(SCANNER_MODEL, manifest)
            emphysema.model_caveat = probability_caveat(manifest)
            disagreement = disagreement_warning(emphysema.model_probability,
                                                emphysema.densitometry["total"].laa_950_percent)
            if disagreement is not None:
                emphysema.warnings.append(disagreement)
    for warning in emphysema.warnings:
        logger.warning(warning)
    state.warnings.extend(emphysema.warnings)
    if state.config.emphysema_map:
        state.lungs = replace(state.lungs, labels=with_low_attenuation(lung_labels, image))


Stage = Callable[[RunState], None]


def plan_stages(tasks: tuple[str, ...]) -> list[tuple[str, Stage]]:
    """The stages for the requested tasks, in order (reading and the lung mask always run)."""
    stages: list[tuple[str, Stage]] = [("read", _read), ("lungs", _lungs)]
    optional: list[tuple[str, Stage]] = [("nodules", _nodules), ("malignancy", _malignancy),
                                         ("emphysema", _emphysema)]
    stages.extend((name, stage) for name, stage in optional if name in tasks)
    return stages


def _findings(state: RunState, timings: dict[str, float], started: str) -> Findings:
    assert state.volume is not None and state.lungs is not None
    mask = state.lungs
    lungs = {"right": LungVolume(volume_ml=mask.right_volume_ml), "left": LungVolume(volume_ml=mask.left_volume_ml),
             "total": LungVolume(volume_ml=mask.total_volume_ml)}
    run = RunInfo(lungai_version=__version__, tasks=[name for name in timings if name not in ("read", "write")],
                  device=state.device, started_utc=started, finished_utc=utc_timestamp(),
                  weights=state.models.weights, timings_s=timings)
    detection = detection_info(state.config) if "nodules" in state.tasks else None
    return Findings(input=InputInfo.from_volume(state.volume), lungs=lungs, emphysema=state.emphysema,
                    nodules=state.nodules, detection=detection, warnings=state.warnings, run=run,
                    provenance=_provenance(state, detection))


def _provenance(state: RunState, detection: DetectionInfo | None) -> Provenance:
    """How the run was asked for (command or API call, operating point, limits, tasks) and what it read."""
    config = state.config
    return Provenance(command=config.command or describe_call(config),
                      operating_point=None if detection is None else detection.operating_point,
                      threshold=None if detection is None else detection.threshold,
                      expected_false_positives_per_scan=None if detection is None else detection.expected_fp_per_scan,
                      max_nodules=config.max_nodules, tasks=list(state.tasks), inputs=state.inputs)


def label_image(state: RunState) -> sitk.Image:
    """Lungs, then lesion ``i`` (nodule or mass) as ``NODULE_BASE_VALUE + i``."""
    assert state.lungs is not None
    array = sitk.GetArrayFromImage(state.lungs.labels).astype(np.uint8)
    for nodule, segmented in zip(state.nodules, state.nodule_masks):
        region = array[segmented.box]
        region[segmented.mask] = labels.nodule(nodule.id).value
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(state.lungs.labels)
    return image


def _write(state: RunState, findings: Findings) -> None:
    assert state.volume is not None and state.lungs is not None
    name = state.volume.name
    lps_labels = label_image(state)
    structures = labels.with_nodules(len(findings.nodules), [n.kind for n in findings.nodules])
    labelled = to_original_orientation(lps_labels, state.volume)
    write_segmentation_files(labelled, structures, state.staging, name)
    write_nodules_csv(findings.nodules, state.staging / "nodules.csv")
    if state.volume.dicom_headers:
        _write_dicom_seg(state, findings, lps_labels, structures, state.staging / f"{name}.seg.dcm")
    write_report_html(findings, state.volume, lps_labels, state.staging / "report.html")
    write_report_pdf(state.staging / "report.html", state.staging / "report.pdf")


def _write_dicom_seg(state: RunState, findings: Findings, lps_labels: sitk.Image,
                     structures: tuple[labels.Structure, ...], path: Path) -> None:
    """The DICOM SEG, or a warning in the findings when the source series cannot be referenced."""
    assert state.volume is not None
    try:
        write_dicom_seg(lps_labels, state.volume, structures, path)
    except SegReferenceError as error:
        message = f"no DICOM SEG written: {error}"
        logger.warning(message)
        findings.warnings.append(message)


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
    """Copy everything LungAI logs during the run into ``run.log``, paths named as they will be."""
    handler = logging.FileHandler(staging / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    package_logger = logging.getLogger("lungai")
    previous_level = package_logger.level
    final_paths = _FinalPaths(staging, output)
    handlers = [*package_logger.handlers, handler]
    for each in handlers:
        each.addFilter(final_paths)
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        for each in handlers:
            each.removeFilter(final_paths)
        package_logger.setLevel(previous_level)
        handler.close()


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
    with staged_output(config.output, config.overwrite) as staging, _run_log(staging, config.output):
        logger.info("lungai %s: %s -> %s (tasks %s, device %s)", __version__, config.input, config.output,
                    ",".join(tasks), device)
        state = RunState(config=config, device=device, staging=staging, models=models, tasks=tasks)
        for index, (name, stage) in enumerate(stages, start=1):
            emit(index, name, "started")
            state.step = functools.partial(emit, index, name, "running")
            t0 = time.perf_counter()
            stage(state)
            timings[name] = round(time.perf_counter() - t0, 3)
            logger.info("stage %s finished in %.2f s", name, timings[name])
            emit(index, name, "finished")
        emit(total, "write", "started")
        t0 = time.perf_counter()
        findings = _findings(state, timings, started)
        _write(state, findings)
        timings["write"] = round(time.perf_counter() - t0, 3)
        findings.run.timings_s = timings
        write_findings_json(findings, staging / "findings.json")
        emit(total, "write", "finished")
    on_event(ProgressEvent(event="done", index=total, total=total, fraction=1.0,
                           elapsed_s=time.perf_counter() - start, data={"output": str(config.output)}))
    return RunResult(findings=findings, output=config.output)
