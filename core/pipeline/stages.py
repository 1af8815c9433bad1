"""The stages of ``lungai run``: each a function of a frozen :class:`ScanContext` that returns its result.

Reading the scan and the lung mask make the context (:func:`read_stage`, :func:`lungs_stage`);
every task stage then works on it and returns what it found: :func:`nodules_stage` the lesions,
:func:`malignancy_stage` the same lesions rated, :func:`emphysema_stage` the emphysema measures.
Nothing a stage returns is changed afterwards; :mod:`lungai.pipeline.runner` composes the stages
(:data:`lungai.pipeline.config.TASKS` says which run) and writes the outputs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import SimpleITK as sitk

from lungai.errors import WeightsError
from lungai.inference.voi_segmentation import recorded_inference
from lungai.io.findings import Densitometry, DetectionInfo, Emphysema, InputFile, Nodule
from lungai.io.provenance import input_fingerprints
from lungai.io.reader import ReadOptions, read_scan
from lungai.io.volume import CTVolume
from lungai.pipeline.config import DETECTOR_MODEL, MEASURED_MODEL, SEGMENTATION_MODEL, RunConfig
from lungai.pipeline.detection import Detection, DetectionConfig, detect_nodules, threshold_of
from lungai.pipeline.lesion_record import nodule_finding
from lungai.pipeline.malignancy import nodules_rating, rated
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.nodules import DEFAULT_THRESHOLD, SegmentedNodule, segment_detections
from lungai.pipeline.operating_points import (
    KNOWN_LIMITATIONS,
    OPERATING_POINTS,
    is_categorised,
    operating_point,
    points_from_inference,
)
from lungai.preprocessing.candidates import find_candidates
from lungai.preprocessing.densitometry import measure_densitometry
from lungai.preprocessing.lesion_region import lesion_region, mass_mask
from lungai.preprocessing.lung_mask import LungMask, segment_lungs
from lungai.preprocessing.measurements import lung_z_ranges, measure_lesion
from lungai.preprocessing.roi import roi_spec

logger = logging.getLogger(__name__)

StepCallback = Callable[[str, float], None]
"""Reports progress inside a stage: what it is doing, and the part of the stage done (0..1)."""


def no_steps(_message: str, _part: float) -> None:
    """A :data:`StepCallback` that reports nothing."""


@dataclass(frozen=True)
class ScanContext:
    """What every task stage works on: the scan, its lungs, and how the run was asked for.

    Attributes:
        config: the run's settings.
        models: the run's models (its device is the run's device).
        volume: the scan.
        lungs: its lung mask.
        step: reports progress inside the stage being run.
    """

    config: RunConfig
    models: ModelStore
    volume: CTVolume
    lungs: LungMask
    step: StepCallback = no_steps


@dataclass(frozen=True)
class Lesions:
    """What the nodules stage found: the lesions' findings records and masks, in the same order.

    Attributes:
        nodules: the findings records, numbered 1, 2, ... (masses first, then by decreasing score).
        masks: each lesion's mask on the scan grid.
        warnings: what the user should know about the detection (also in the findings' ``warnings``).
    """

    nodules: tuple[Nodule, ...] = ()
    masks: tuple[SegmentedNodule, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmphysemaResult:
    """What the emphysema stage found.

    Attributes:
        record: the findings record (its ``warnings`` are also the findings' ``warnings``).
        lung_labels: the lung labels with the low-attenuation segment for the segmentation outputs
            (``RunConfig.emphysema_map``); ``None`` without the map.
    """

    record: Emphysema
    lung_labels: sitk.Image | None = None


@dataclass(frozen=True)
class ScanRead:
    """The read stage's result.

    Attributes:
        volume: the scan.
        inputs: fingerprints of the files it was read from.
    """

    volume: CTVolume
    inputs: list[InputFile]


def read_stage(config: RunConfig) -> ScanRead:
    """Read the scan ``config`` names (with its soft input checks) and fingerprint its files."""
    options = ReadOptions(series_uid=config.series_uid, include_patient_id=config.include_patient_id,
                          force=config.force)
    volume = read_scan(config.input, options)
    return ScanRead(volume, input_fingerprints(volume, Path(config.input)))


def lungs_stage(volume: CTVolume) -> LungMask:
    """The scan's lung mask (it logs its warnings itself)."""
    return segment_lungs(volume.image)


def detection_config(config: RunConfig) -> DetectionConfig:
    """How a run selects its detections: its operating point, or its detection threshold."""
    return DetectionConfig(operating_point=config.operating_point, threshold=config.detection_threshold)


def describe_operating_point(config: RunConfig) -> str:
    """The nodule operating point in words, with its expected false positives per scan."""
    point = operating_point(config.operating_point)
    threshold = threshold_of(detection_config(config))
    if config.detection_threshold is not None:
        return f"nodule detection score >= {threshold:.2f} (set by --detection-threshold)"
    fp = ("not calibrated yet" if math.isnan(point.expected_fp_per_scan)
          else f"{point.expected_fp_per_scan:.1f} expected false positives per scan")
    return f"nodule operating point {config.operating_point}: score >= {threshold:.2f}, {fp}"


def detection_info(config: RunConfig) -> DetectionInfo:
    """The operating point of a run's lesion detection, with its expected cost and known weak spots."""
    threshold = threshold_of(detection_config(config))
    limits = list(KNOWN_LIMITATIONS)
    if config.detection_threshold is not None:
        return DetectionInfo("custom", round(threshold, 4), known_limitations=limits)
    point = operating_point(config.operating_point)
    fp = None if math.isnan(point.expected_fp_per_scan) else point.expected_fp_per_scan
    return DetectionInfo(config.operating_point, point.threshold, point.sensitivity, fp, limits)


def _time_left(elapsed_s: float, done: int, total: int) -> str:
    """``, about N s left`` at the pace so far (detections differ in cost: a rough estimate), or nothing."""
    if done >= total or done == 0:
        return ""
    return f", about {elapsed_s / done * (total - done):.0f} s left"


def _warn(message: str, warnings: list[str]) -> None:
    logger.warning(message)
    warnings.append(message)


def _detector_points_warning(models: ModelStore) -> str | None:
    """A warning when the detector weights in use record other operating points than the installed
    detector's, which are the ones applied (e.g. weights of another manifest)."""
    try:
        recorded = points_from_inference(models.inference(DETECTOR_MODEL))
    except ValueError:
        recorded = None
    if recorded == OPERATING_POINTS:
        return None
    return (f"the {DETECTOR_MODEL} weights in use record {'other' if recorded else 'no'} operating points than "
            "the installed detector's, whose thresholds and expected false positives apply")


def _lesion_detections(context: ScanContext, masses: list[Detection], warnings: list[str]) -> list[Detection]:
    """Blob detections at the operating point (at most ``max_nodules``), after the masses."""
    image, config = context.volume.image, context.config
    context.step("finding blob candidates", 0.05)
    candidates = find_candidates(image, context.lungs.labels, detection_config(config).candidates)
    context.step(f"scoring {len(candidates)} candidates", 0.15)
    mismatch = _detector_points_warning(context.models)
    if mismatch is not None:
        _warn(mismatch, warnings)
    detections = detect_nodules(image, context.lungs.labels, detection_config(config), context.models.device,
                                classifier=context.models.get(DETECTOR_MODEL), candidates=candidates)
    if len(detections) > config.max_nodules:
        _warn(f"{len(detections)} nodule detections at this operating point; only the "
              f"{config.max_nodules} strongest were segmented (--max-nodules)", warnings)
        detections = detections[: config.max_nodules]
    return masses + detections


def nodules_stage(context: ScanContext) -> Lesions:
    """Find, segment and measure the scan's lesions: masses by the mass rule, blobs by the detector.

    Raises:
        WeightsError: the segmentation weights were trained on another ROI or record unusable
            inference settings.
    """
    image, models, step = context.volume.image, context.models, context.step
    models.check_roi(SEGMENTATION_MODEL, roi_spec(SEGMENTATION_MODEL))
    logger.info("%s", describe_operating_point(context.config))
    step("finding the lesion search region and masses", 0.0)
    search = lesion_region(image, context.lungs.labels)
    warnings: list[str] = []
    masses = [Detection(m.centre_lps_mm, m.core_radius_mm, None, source="mass", extent_mm_zyx=m.extent_mm_zyx)
              for m in search.masses]
    detections = _lesion_detections(context, masses, warnings)
    hu = sitk.GetArrayViewFromImage(image)
    lung_labels = sitk.GetArrayViewFromImage(context.lungs.labels)
    try:
        inference = recorded_inference(models.inference(SEGMENTATION_MODEL), DEFAULT_THRESHOLD)
    except ValueError as exc:
        raise WeightsError(f"{SEGMENTATION_MODEL} weights: {exc}", "reinstall or re-release the weights") from None
    candidates = {m.centre_lps_mm: m for m in search.masses}

    def mass_segmenter(detection: Detection) -> SegmentedNodule:
        box, mask = mass_mask(candidates[detection.centre_lps_mm], image, search.region)
        return SegmentedNodule(detection, box, mask)

    step(f"segmenting {len(detections)} detections ({len(masses)} by the mass rule)", 0.3)
    started = time.perf_counter()

    def report_segmented(done: int, total: int) -> None:
        step(f"segmented {done} of {total} detections{_time_left(time.perf_counter() - started, done, total)}",
             0.3 + 0.6 * done / total)

    masks = segment_detections(models.get(SEGMENTATION_MODEL), hu, image, detections, inference, search.region,
                               mass_segmenter, report_segmented, lung_labels)
    z_ranges = lung_z_ranges(lung_labels)
    nodules = []
    for index, segmented in enumerate(masks, start=1):
        step(f"measuring lesion {index} of {len(masks)}", 0.9 + 0.1 * (index - 1) / len(masks))
        measured = measure_lesion(segmented.mask, hu, lung_labels, image, segmented.box, z_ranges)
        detection = segmented.detection
        nodules.append(nodule_finding(index, measured, image, detection.score, detection.source))
    logger.info("nodules: %d lesions (%d masses) of %d detections", len(nodules),
                sum(n.kind == "mass" for n in nodules), len(detections))
    return Lesions(tuple(nodules), tuple(masks), tuple(warnings))


def malignancy_stage(context: ScanContext, lesions: Lesions) -> Lesions:
    """``lesions`` with the malignancy and characteristics estimates of those that earn them
    (:func:`~lungai.pipeline.operating_points.is_categorised`).

    Raises:
        WeightsError: the scorer's weights are missing or were fitted on other features.
    """
    hu = sitk.GetArrayViewFromImage(context.volume.image)
    chosen = [index for index, nodule in enumerate(lesions.nodules) if is_categorised(nodule)]
    ratings = nodules_rating(context.models, hu, context.volume.image, [lesions.masks[i] for i in chosen])
    settings = context.models.inference(MEASURED_MODEL) if ratings else {}
    nodules = list(lesions.nodules)
    for index, rating in zip(chosen, ratings):
        nodules[index] = rated(nodules[index], rating, settings)
    return replace(lesions, nodules=tuple(nodules))


def emphysema_stage(context: ScanContext) -> EmphysemaResult:
    """Densitometry per lung with this scan's reliability warnings; the scanner's probability; the optional map.

    The scanner runs when asked for (``emphysema_probability``: its weights are then required) or
    when its weights are not demonstration weights (then missing weights only cost a warning);
    shipped demonstration weights are never loaded otherwise.

    Raises:
        WeightsError: the scanner was asked for and its weights are not listed or cannot be loaded.
    """
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

    image, lung_labels = context.volume.image, context.lungs.labels
    measured = measure_densitometry(image, lung_labels).to_dict()
    densitometry = {
        region: Densitometry(laa_950_percent=values["laa_950_percent"], laa_910_percent=values["laa_910_percent"],
                             laa_856_percent=values["laa_856_percent"], perc15_hu=values["perc15_hu"])
        for region, values in measured.items() if values is not None}
    acquisition = describe_acquisition(context.volume)
    warnings = densitometry_warnings(acquisition)
    manifest, asked = context.models.manifest, context.config.emphysema_probability
    if asked and SCANNER_MODEL not in manifest.models:
        raise WeightsError(f"--emphysema-probability needs the {SCANNER_MODEL} weights, which the weights manifest "
                           "does not list", "run without --emphysema-probability (`lungai weights list` shows what "
                           "this installation has)")
    probability = model = caveat = None
    if asked or scanner_by_default(manifest):
        try:
            scanner = context.models.get(SCANNER_MODEL)
        except WeightsError as error:
            if asked:
                raise
            warnings.append(f"emphysema model {SCANNER_MODEL} not run, densitometry only ({error.problem})")
        else:
            probability = emphysema_probability(scanner, image, lung_labels, context.models.device)
            model, caveat = weights_info(SCANNER_MODEL, manifest), probability_caveat(manifest)
            disagreement = disagreement_warning(probability, densitometry["total"].laa_950_percent)
            if disagreement is not None:
                warnings.append(disagreement)
    for warning in warnings:
        logger.warning(warning)
    emphysema = Emphysema(densitometry=densitometry, model_probability=probability, model=model, model_caveat=caveat,
                          warnings=warnings, notes=densitometry_notes(acquisition))
    labelled = with_low_attenuation(lung_labels, image) if context.config.emphysema_map else None
    return EmphysemaResult(emphysema, labelled)
