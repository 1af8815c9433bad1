"""``lungai follow-up``: a scan compared with the patient's prior, nodule by nodule.

1. Both sides are resolved and read (:mod:`lungai.followup.scans`), and checked before any slow
   work: the same DICOM PatientID (:class:`~lungai.errors.DifferentPatientError` unless
   ``force``), the prior not dated after the current scan (:class:`~lungai.errors.ScanOrderError`).
   Dates come from the DICOM headers or the configuration; without them the interval is unknown,
   which only the time-based measures (VDT, the 12-month growth window, stepped management) need.
2. Each scan is analysed by :func:`lungai.pipeline.runner.run_pipeline` (tasks lungs and nodules,
   one model store for both, so each model loads once) into ``prior/`` and ``current/``, or its
   output folder is checked and copied there.
3. Registration prior -> current (:mod:`lungai.followup.registration`).
4. Matching (:mod:`lungai.followup.matching`) of the prior centroids mapped into the current scan
   (with the transform of the lung each nodule lies in) against the current centroids; an
   unmatched nodule is segmented at its position mapped into the other scan
   (:mod:`lungai.followup.remeasure`) before it is called ``resolved`` or ``new``.
5. Growth (:mod:`lungai.followup.growth`) and categories (:mod:`lungai.followup.categories`) per pair.
6. The outputs (:mod:`lungai.followup.outputs`) and ``follow_up.log``, written into a staging
   folder moved into place at the end: a failed follow-up leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai.errors import DifferentPatientError, OutputExistsError, ScanOrderError
from lungai.followup import scans
from lungai.followup.categories import Nodule as CategoryNodule
from lungai.followup.categories import fleischner, lung_rads_follow_up
from lungai.followup.growth import VDT_CAVEAT, Growth, Size, growth
from lungai.followup.matching import MatchingConfig, match
from lungai.followup.registration import Registration, register
from lungai.followup.remeasure import Found, Segmenter
from lungai.followup.volumetry import PairedVolumes, Side, paired_volumes
from lungai.io.findings import Nodule
from lungai.io.output import check_output_target, staged_output
from lungai.io.run_log import RunLog
from lungai.io.volume import CTVolume
from lungai.labels import nodule as nodule_label
from lungai.pipeline.config import RunConfig
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.runner import model_store, run_pipeline

logger = logging.getLogger(__name__)

#: The tasks each scan is analysed with.
TASKS = ("lungs", "nodules")
#: ``found_by`` of a nodule segmented at its position mapped from the other scan.
MAPPED = "mapped_segmentation"


@dataclass
class FollowUpConfig:
    """What a follow-up is asked to do.

    Attributes:
        prior: the prior scan, or a LungAI output folder of it.
        current: the current scan, or a LungAI output folder of it.
        output: the output folder (must not exist unless ``overwrite``).
        prior_date: the prior's date when its file has none (overrides the DICOM header).
        current_date: the current scan's date, likewise.
        interval_days: the interval when the dates are unknown (overrides the dates).
        overwrite: replace an existing output folder once the new one is complete.
        force: compare scans with different PatientIDs, and skip the soft input checks.
        device: where models run.
        sensitivity: nodule detection operating point.
        manifest: a weights manifest instead of the installed one.
        command: the command line, recorded in the outputs.
    """

    prior: Path
    current: Path
    output: Path
    prior_date: dt.date | None = None
    current_date: dt.date | None = None
    interval_days: int | None = None
    overwrite: bool = False
    force: bool = False
    device: str = "auto"
    sensitivity: str = "balanced"
    manifest: Path | None = None
    command: str | None = None


@dataclass
class Lesion:
    """One nodule on one scan.

    Attributes:
        finding_index: 0-based index into that run's ``findings.json`` nodules; ``None`` when
            segmented at a mapped position.
        nodule_id: its segment number on that scan (``Nodule <id>``).
        centre_lps_mm: its centroid, that scan's LPS mm.
        type: ``solid``, ``part-solid`` or ``ground-glass``.
        kind: ``nodule`` or ``mass``.
        size: axes, volume, solid component.
        found_by: ``detector`` or ``mapped_segmentation``.
        location: e.g. ``right lung, upper zone``.
    """

    finding_index: int | None
    nodule_id: int
    centre_lps_mm: np.ndarray
    type: str
    kind: str
    size: Size
    found_by: str
    location: str | None

    @property
    def lung(self) -> str | None:
        """``right`` or ``left`` from the location, else ``None``."""
        side = (self.location or "").split(" ", 1)[0]
        return side if side in ("right", "left") else None

    @property
    def category_nodule(self) -> CategoryNodule:
        """What the categories need."""
        return CategoryNodule(self.type, self.size)


@dataclass
class Pair:
    """A row of the comparison: a matched pair, a new or a resolved nodule."""

    status: str
    prior: Lesion | None
    current: Lesion | None
    prior_in_current_mm: np.ndarray | None = None
    distance_mm: float | None = None
    growth: Growth | None = None
    paired: PairedVolumes | None = None
    lung_rads: dict[str, Any] | None = None
    fleischner: dict[str, Any] | None = None


@dataclass
class FollowUp:
    """A finished comparison (what :mod:`lungai.followup.outputs` writes)."""

    config: FollowUpConfig
    prior: scans.Analysed
    current: scans.Analysed
    dates: tuple[dt.date | None, dt.date | None]
    interval_days: int | None
    registration: Registration
    pairs: list[Pair]
    lesion_labels: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def _from_finding(index: int, nodule: Nodule) -> Lesion:
    size = Size(nodule.long_axis_mm, nodule.short_axis_mm, nodule.volume_mm3, nodule.solid_component_mm)
    return Lesion(index, nodule.id, np.asarray(nodule.centroid.lps_mm, float), nodule.type, nodule.kind, size,
                  "detector", nodule.location)


def _from_found(found: Found, nodule_id: int) -> Lesion:
    m = found.measured
    size = Size(m.diameters.long_axis_mm, m.diameters.short_axis_mm, m.volume_mm3, m.solid_component_mm)
    kind = "mass" if m.diameters.long_axis_mm > 30.0 else "nodule"
    return Lesion(None, nodule_id, np.asarray(m.centroid_lps, float), m.type, kind, size, MAPPED,
                  m.location)


def resolve_dates(config: FollowUpConfig, prior: CTVolume, current: CTVolume
                  ) -> tuple[dt.date | None, dt.date | None, int | None, list[str]]:
    """The two dates, the interval in days, and warnings (see the module docstring, step 1).

    Raises:
        ScanOrderError: the prior is dated after the current scan.
    """
    warnings = []
    dates = []
    for given, volume, role in ((config.prior_date, prior, "prior"), (config.current_date, current, "current")):
        header = scans.scan_date(volume)
        if given is not None and header is not None and given != header:
            warnings.append(f"the {role} date given ({given}) differs from its DICOM header's ({header}); "
                            "the date given is used")
        dates.append(given or header)
    interval = None if None in dates else (dates[1] - dates[0]).days  # type: ignore[operator]  # both dates known
    if interval is not None and interval < 0:
        raise ScanOrderError(f"the prior scan ({dates[0]}) is dated after the current one ({dates[1]})",
                             "swap PRIOR and CURRENT, or correct --prior-date/--current-date")
    if config.interval_days is not None:
        if interval is not None and interval != config.interval_days:
            warnings.append(f"--interval-days {config.interval_days} differs from the dates' interval ({interval} "
                            "days); --interval-days is used")
        interval = config.interval_days
    if interval is None:
        warnings.append("no scan dates: the volume doubling time and the time-based Lung-RADS rules are left out "
                        "(give --prior-date/--current-date or --interval-days)")
    return dates[0], dates[1], interval, warnings


def check_patient(prior: CTVolume, current: CTVolume, force: bool) -> list[str]:
    """Refuse scans of two patients (unless ``force``); warn when identity cannot be checked.

    Raises:
        DifferentPatientError: the DICOM PatientIDs differ and ``force`` is false.
    """
    ids = scans.patient_id(prior), scans.patient_id(current)
    if None in ids:
        return ["the patient's identity was not checked (no DICOM PatientID in "
                f"{'either scan' if ids == (None, None) else 'one scan'}): make sure both scans are the same patient's"]
    if ids[0] != ids[1]:
        if not force:
            raise DifferentPatientError("the prior and current scans have different DICOM PatientIDs",
                                        "compare scans of one patient, or use --force if the IDs were changed")
        return ["the two scans have different DICOM PatientIDs (compared anyway: --force)"]
    return []


def _analyse(side: scans.Side, volume: CTVolume, target: Path, store: ModelStore,
             config: FollowUpConfig) -> scans.Analysed:
    """Analyse a scan into ``target``, or check and copy the output folder given for it."""
    if side.folder is not None:
        findings = scans.check_reusable(side, volume)
        shutil.copytree(side.folder, target)
        logger.info("%s: reusing %s", side.role, side.folder)
    else:
        run = RunConfig(input=side.scan, output=target, tasks=TASKS, device=config.device, force=config.force,
                        operating_point=config.sensitivity, manifest=config.manifest, command=config.command)
        findings = run_pipeline(run, models=store).findings
    return scans.Analysed(side, volume, findings, scans.load_labels(target, volume, side.role), target)


def _map_prior(lesion: Lesion, registration: Registration) -> np.ndarray:
    return registration.to_current(lesion.centre_lps_mm, lesion.lung)


def _pairs(prior: scans.Analysed, current: scans.Analysed, registration: Registration, interval: int | None,
           store: ModelStore, labels: dict[str, np.ndarray], matching: MatchingConfig) -> list[Pair]:
    """Match, segment the unmatched at their mapped positions, then measure change and categorise."""
    before = [_from_finding(i, n) for i, n in enumerate(prior.findings.nodules)]
    now = [_from_finding(i, n) for i, n in enumerate(current.findings.nodules)]
    mapped = [_map_prior(lesion, registration) for lesion in before]
    found = match(np.array(mapped).reshape(-1, 3), np.array([b.size.mean_diameter_mm for b in before]),
                  np.array([n.centre_lps_mm for n in now]).reshape(-1, 3),
                  np.array([n.size.mean_diameter_mm for n in now]), matching)
    pairs = [Pair("matched", before[i], now[j], mapped[i], distance) for i, j, distance in found.pairs]
    in_current = Segmenter(store, current.volume.image, labels["current"])
    for i in found.unmatched_prior:
        hit = in_current.segment_at(mapped[i], before[i].size.mean_diameter_mm, 10 + len(now) + 1)
        if hit is None:
            pairs.append(Pair("resolved", before[i], None, mapped[i]))
            continue
        now.append(_from_found(hit, len(now) + 1))
        pairs.append(Pair("matched", before[i], now[-1], mapped[i],
                          round(float(np.linalg.norm(now[-1].centre_lps_mm - mapped[i])), 2)))
    in_prior = Segmenter(store, prior.volume.image, labels["prior"])
    for j in found.unmatched_current:
        target = registration.to_prior(now[j].centre_lps_mm, now[j].lung)
        hit = in_prior.segment_at(target, now[j].size.mean_diameter_mm, 10 + len(before) + 1)
        if hit is None:
            pairs.append(Pair("new", None, now[j]))
            continue
        before.append(_from_found(hit, len(before) + 1))
        back = _map_prior(before[-1], registration)
        pairs.append(Pair("matched", before[-1], now[j], back,
                          round(float(np.linalg.norm(now[j].centre_lps_mm - back)), 2)))
    for pair in pairs:
        if pair.status == "matched":
            pair.paired = _paired_volumes(pair, prior, current, registration, labels)
        _assess(pair, interval)
    return sorted(pairs, key=_order)


def _paired_volumes(pair: Pair, prior: scans.Analysed, current: scans.Analysed, registration: Registration,
                    labels: dict[str, np.ndarray]) -> PairedVolumes | None:
    """The pair's volumes measured on both scans together (:mod:`lungai.followup.volumetry`)."""
    assert pair.prior is not None and pair.current is not None  # a matched pair
    transform = registration.transform_for(pair.current.lung or pair.prior.lung)
    paired = paired_volumes(Side(prior.volume.image, labels["prior"], nodule_label(pair.prior.nodule_id).value,
                                 pair.prior.found_by == MAPPED),
                            Side(current.volume.image, labels["current"], nodule_label(pair.current.nodule_id).value,
                                 pair.current.found_by == MAPPED),
                            transform)
    if paired is None:
        logger.info("prior %d / current %d: paired volumetry not possible, the segmented volumes are used",
                    pair.prior.nodule_id, pair.current.nodule_id)
    return paired


def vdt_caveat(pairs: list[Pair]) -> list[str]:
    """:data:`~lungai.followup.growth.VDT_CAVEAT` when some pair has a volume doubling time, else nothing."""
    return [VDT_CAVEAT] if any(p.growth is not None and p.growth.vdt_days is not None for p in pairs) else []


def _order(pair: Pair) -> tuple[int, int]:
    """Matched, then new, then resolved; each by nodule number."""
    lesion = pair.current or pair.prior
    return (("matched", "new", "resolved").index(pair.status), 0 if lesion is None else lesion.nodule_id)


def _assess(pair: Pair, interval: int | None) -> None:
    """Growth, Lung-RADS and Fleischner of one pair."""
    prior = None if pair.prior is None else pair.prior.category_nodule
    current = None if pair.current is None else pair.current.category_nodule
    if prior is not None and current is not None:
        pair.growth = growth(prior.size, current.size, interval, pair.paired)
    change = None if pair.growth is None else pair.growth.mean_diameter_change_mm
    pair.lung_rads = lung_rads_follow_up(prior, current, interval, change)
    pair.fleischner = fleischner(current, None if pair.lung_rads is None else pair.lung_rads["change"], interval)


def _refuse_output_holding_inputs(config: FollowUpConfig) -> None:
    output = Path(config.output).absolute()
    for given in (config.prior, config.current):
        path = Path(given).absolute()
        if path == output or output in path.parents:
            raise OutputExistsError(f"output folder {output} contains the input {given}",
                                    "choose an output folder outside the inputs with -o")


def run_follow_up(config: FollowUpConfig, matching: MatchingConfig | None = None,
                  models: ModelStore | None = None) -> FollowUp:
    """Compare the current scan with the prior and write the outputs (see the module docstring).

    ``models``: an already-loaded store to reuse (``lungai batch``'s workers); ``None``: a new one
    for ``config.device`` and ``config.manifest``.

    Raises:
        LungAIError: for every problem a user can cause; nothing is left in the output location then.
    """
    from lungai.followup.outputs import write_outputs

    timings: dict[str, float] = {}
    started = time.perf_counter()
    check_output_target(config.output, config.overwrite)
    _refuse_output_holding_inputs(config)
    sides = scans.resolve(config.prior, "prior"), scans.resolve(config.current, "current")
    volumes = [scans.read_side(side, config.force) for side in sides]
    warnings = check_patient(volumes[0], volumes[1], config.force)
    prior_date, current_date, interval, date_warnings = resolve_dates(config, volumes[0], volumes[1])
    warnings += date_warnings + scans.acquisition_warnings(volumes[0], volumes[1])
    timings["read"] = round(time.perf_counter() - started, 2)
    store = models if models is not None else model_store(
        RunConfig(input=Path(), output=Path(), device=config.device, manifest=config.manifest))
    with staged_output(config.output, config.overwrite) as staging, RunLog(staging / "follow_up.log"):
        t0 = time.perf_counter()
        prior, current = (_analyse(side, volume, staging / side.role, store, config)
                          for side, volume in zip(sides, volumes))
        timings["analyse"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        registration = register(current.volume.image, current.lung_labels, prior.volume.image, prior.lung_labels)
        timings["register"] = round(time.perf_counter() - t0, 2)
        if registration.quality == "poor":
            warnings.append(f"registration quality is poor (lung-mask Dice {registration.dice['overall']:.2f}, "
                            f"right {registration.dice['right']:.2f}, left {registration.dice['left']:.2f}): the "
                            "matches, new and resolved nodules are unreliable; check them in the images")
        t0 = time.perf_counter()
        labels = {"prior": sitk.GetArrayFromImage(prior.labels), "current": sitk.GetArrayFromImage(current.labels)}
        pairs = _pairs(prior, current, registration, interval, store, labels, matching or MatchingConfig())
        warnings += vdt_caveat(pairs)
        timings["match"] = round(time.perf_counter() - t0, 2)
        result = FollowUp(config, prior, current, (prior_date, current_date), interval, registration, pairs, labels,
                          warnings, timings)
        for warning in warnings:
            logger.warning(warning)
        t0 = time.perf_counter()
        write_outputs(result, staging)
        timings["write"] = round(time.perf_counter() - t0, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    logger.info("follow-up: %d pairs in %.1f s (%s)", len(pairs), timings["total"], timings)
    return result
