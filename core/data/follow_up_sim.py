"""Synthetic follow-up pairs: a real scan with inserted nodules and the same anatomy scanned again later.

Each pair is made from one real whole scan (the *background*) and real LIDC nodule VOIs:

1. **Nodules.** ``matched + resolved + new`` VOIs are drawn from the pair's VOI split (about
   ``small_fraction`` of them 4-6 mm, the rest 6 mm to ``max_voi_diameter_mm`` by ``nodules.csv``
   ``diameter_mm``),
   each flipped and rotated at random (:func:`lungai.data.lesion_insertion.augment_voi`). Each
   matched nodule gets a volume factor: stable (``stable_factors``), growing
   (``growth_factors``) or shrinking (``shrink_factors``); a factor never makes a nodule larger
   than ``max_diameter_mm``. A nodule changes size by rescaling its VOI (image and mask)
   about its centre by the factor's cube root.
2. **Sites.** :func:`~lungai.data.lesion_insertion.place_nodules` picks a lung site for every
   nodule at the larger of its two sizes, away from the background's real lesions and from the
   first and last ``edge_margin_mm`` of the scan (so the moved nodule stays inside the current
   scan).
3. **Prior** = the background on its own grid with the matched and resolved nodules pasted.
4. **Transform.** A random affine ``A`` about the scan centre (rotation up to
   ``max_rotation_deg`` about a random axis, scale within ``max_scale`` per axis, translation up
   to ``max_translation_mm``) followed by a breathing-like deformation: the current point ``q``
   shows the anatomy of ``A^-1(q + v(q))``, with ``v`` a smooth field along a mostly
   craniocaudal direction whose size rises from 0 at the lung apices to ``deformation_mm`` at
   the lung bases and falls off away from the body axis (``breathing_sigma_mm``). ``A`` is
   ``prior_to_current_affine_lps``; a prior point ``p`` lies at ``q`` with ``q + v(q) = A(p)``
   in the current scan (:meth:`PairTransform.to_current`).
5. **Current** = the clean background resampled through that transform (linear) onto a grid of
   the same field of view and in-plane spacing but another slice spacing (one of
   ``slice_spacings_mm`` that differs from the prior's), the matched nodules pasted at the
   transformed position of their prior centre with their new size, the new nodules pasted at the
   transformed position of their own sites, and Gaussian noise of ``noise_hu`` HU added.

Truth (``truth.json``) is measured on the pasted masks (blend weight >= 0.5) on each scan's own
grid: centre (mask centroid, LPS mm), volume (voxels x voxel volume), axial long and short axis
(:func:`lungai.preprocessing.measurements.axial_diameters`) and their mean, then
``VDT = interval x ln 2 / ln(V2 / V1)`` (growing matched nodules only) and the Lung-RADS growth
flag (mean diameter up by more than ``GROWTH_MM``). Tune pairs use the training backgrounds and
TRAINING-split VOIs; test pairs use the whole-scan test patients LIDC-IDRI-0001/0002 (their
readers' nodules excluded from the sites) and TEST-split VOIs. Every random choice comes from a
generator seeded by ``(seed, split, pair index)``.

The VOIs' ``Texture_value`` is copied into the truth for analysis; it is never an input.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lungai.data.lesion_insertion import (
    BACKGROUND_NAMES,
    Background,
    InsertionConfig,
    augment_voi,
    blend,
    load_background,
    paste_weights,
    place_nodules,
)
from lungai.data.lidc_vois import VOICase, VOISample, list_vois
from lungai.data.splits import cases_for_split, load_split
from lungai.errors import InputNotFoundError
from lungai.io.output import staged_output
from lungai.preprocessing.measurements import axial_diameters

logger = logging.getLogger(__name__)

TRUTH_SCHEMA = "lungai-follow-up-truth"
TRUTH_VERSION = "1.0"
PAIRS_CSV = "pairs.csv"
PAIRS_COLUMNS = ("pair_id", "split", "background", "prior", "current", "prior_date", "current_date")
TEST_PATIENTS = ("LIDC-IDRI-0001", "LIDC-IDRI-0002")
VOI_SPLIT = {"tune": "train", "test": "test"}
"""The VOI split each pair split draws its nodules from."""
GROWTH_MM = 1.5
"""Lung-RADS growth: mean diameter up by more than this (mm)."""
AIR_HU = -1024

Point = Sequence[float] | np.ndarray
"""A physical LPS point (mm)."""


@dataclass(frozen=True)
class FollowUpSimConfig:
    """How one pair is simulated.

    Attributes:
        matched: nodules on both scans.
        resolved: nodules on the prior only.
        new: nodules on the current only.
        min_diameter_mm: smallest VOI (``nodules.csv`` ``diameter_mm``) used.
        max_voi_diameter_mm: largest VOI used (larger ones would pass 30 mm, a mass, once grown).
        small_fraction: share of nodules drawn from the 4-6 mm VOIs (the rest are >= 6 mm).
        max_diameter_mm: a growth factor is capped so that the grown VOI's ``diameter_mm`` stays below this.
        stable_fraction: share of matched nodules with a stable factor.
        growth_fraction: share of matched nodules that grow (the rest shrink).
        stable_factors: range of the volume factor of stable nodules.
        growth_factors: range of the volume factor of growing nodules.
        shrink_factors: range of the volume factor of shrinking nodules.
        max_rotation_deg: largest rotation angle.
        max_translation_mm: largest translation length.
        max_scale: largest relative scale change per axis.
        deformation_mm: range of the breathing deformation's largest displacement.
        breathing_sigma_mm: in-plane fall-off (Gaussian sigma) of the deformation from the body axis.
        field_spacing_mm: grid spacing of the deformation field.
        slice_spacings_mm: slice spacings the current scan is resampled to (one differing from the prior's).
        noise_hu: range of the standard deviation of the noise added to the current scan.
        intervals_days: nominal intervals between the scans (each jittered by up to ``interval_jitter_days``).
        interval_jitter_days: largest jitter of the interval.
        edge_margin_mm: no site within this of the first or last slice.
        lesion_margin_mm: no site within this of a real lesion of a test scan.
        insertion: blending and placement of the pasted VOIs.
    """

    matched: int = 4
    resolved: int = 1
    new: int = 1
    min_diameter_mm: float = 4.0
    max_voi_diameter_mm: float = 20.0
    small_fraction: float = 0.2
    max_diameter_mm: float = 24.0
    stable_fraction: float = 0.3
    growth_fraction: float = 0.7
    stable_factors: tuple[float, float] = (0.95, 1.05)
    growth_factors: tuple[float, float] = (1.3, 2.5)
    shrink_factors: tuple[float, float] = (0.7, 0.85)
    max_rotation_deg: float = 3.0
    max_translation_mm: float = 5.0
    max_scale: float = 0.03
    deformation_mm: tuple[float, float] = (2.0, 5.0)
    breathing_sigma_mm: float = 150.0
    field_spacing_mm: float = 8.0
    slice_spacings_mm: tuple[float, ...] = (1.25, 2.5)
    noise_hu: tuple[float, float] = (5.0, 20.0)
    intervals_days: tuple[int, ...] = (90, 180, 365, 730)
    interval_jitter_days: int = 14
    edge_margin_mm: float = 30.0
    lesion_margin_mm: float = 10.0
    insertion: InsertionConfig = field(default_factory=InsertionConfig)


@dataclass(frozen=True)
class PairSpec:
    """Which pair to make: its id, split, background and seed."""

    pair_id: str
    split: str
    background: str
    seed: tuple[int, int, int]


@dataclass(frozen=True)
class PlannedNodule:
    """A nodule before pasting: its VOI (prior size), status and volume factor (matched only)."""

    case: VOICase
    sample: VOISample
    status: str
    factor: float | None


@dataclass
class PairTransform:
    """The prior -> current mapping: affine ``A`` then the breathing deformation.

    Attributes:
        affine: ``A``, prior physical point -> current point before deformation.
        field: ``q -> q + v(q)`` on the current scan's physical space.
        max_displacement_mm: largest ``|v|`` on the field's grid.
    """

    affine: sitk.AffineTransform
    field: sitk.DisplacementFieldTransform
    max_displacement_mm: float

    def current_to_prior(self) -> sitk.Transform:
        """The resampling transform: a current point -> the prior point it shows."""
        return sitk.CompositeTransform([self.affine.GetInverse(), self.field])

    def to_current(self, point: Point, iterations: int = 30) -> np.ndarray:
        """The current position of a prior point (solves ``q + v(q) = A(p)`` by fixed-point iteration)."""
        target = np.asarray(self.affine.TransformPoint([float(v) for v in point]))
        q = target.copy()
        for _ in range(iterations):
            q = target - (np.asarray(self.field.TransformPoint(q.tolist())) - q)
        return q

    def affine_matrix(self) -> list[list[float]]:
        """``A`` as a 4 x 4 homogeneous matrix on LPS mm."""
        matrix = np.asarray(self.affine.GetMatrix()).reshape(3, 3)
        centre = np.asarray(self.affine.GetCenter())
        offset = centre + np.asarray(self.affine.GetTranslation()) - matrix @ centre
        return np.block([[matrix, offset[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]).tolist()


@dataclass
class SimulatedPair:
    """One finished pair.

    Attributes:
        prior: the prior scan, int16 HU.
        current: the current scan, int16 HU.
        truth: the ``truth.json`` record.
        labels: ``(prior, current)`` uint8 ``(z, y, x)`` arrays on each scan's grid: ``i`` marks the
            pasted mask of truth nodule ``n<i>`` (not written; for checks).
        transform: the applied prior -> current transform.
    """

    prior: sitk.Image
    current: sitk.Image
    truth: dict[str, Any]
    labels: tuple[np.ndarray, np.ndarray] = field(repr=False)
    transform: PairTransform = field(repr=False)


# -- backgrounds and VOIs ------------------------------------------------------------------------

def background_names(split: str) -> tuple[str, ...]:
    """The backgrounds of a pair split: the training backgrounds (``tune``) or the test patients (``test``)."""
    if split not in VOI_SPLIT:
        raise ValueError(f"unknown pair split {split!r}; choose tune or test")
    return BACKGROUND_NAMES if split == "tune" else TEST_PATIENTS


def load_test_background(patient: str, data_root: str | Path, margin_mm: float = 10.0) -> Background:
    """A whole-scan test patient as a background; its readers' nodules (grown by ``margin_mm``) are excluded."""
    from lungai.data.lidc_consensus import consensus_nodules
    from lungai.data.lidc_xml import parse_lidc_xml
    from lungai.io.reader import read_scan
    from lungai.preprocessing.lung_mask import segment_lungs

    folder = Path(data_root) / "lidc_scans" / patient
    scan = next((p for p in (folder / "dicom.zip", folder / f"{patient}.nrrd") if p.exists()), None)
    if scan is None or not (folder / "annotations.xml").is_file():
        raise InputNotFoundError(f"{folder} has no dicom.zip or {patient}.nrrd with annotations.xml",
                                 "point --data-root to the shared data folder")
    volume = read_scan(scan)
    lungs = segment_lungs(volume.image).labels
    excluded = np.zeros(tuple(reversed(volume.image.GetSize())), bool)
    pad = np.ceil(margin_mm / np.asarray(volume.image.GetSpacing())[::-1]).astype(int)
    for nodule in consensus_nodules(parse_lidc_xml(folder / "annotations.xml"), volume.image,
                                    original_orientation=volume.original_orientation):
        voxels = np.stack(np.unravel_index(nodule.voxels, excluded.shape), axis=1)
        lo, hi = np.maximum(voxels.min(axis=0) - pad, 0), voxels.max(axis=0) + pad + 1
        excluded[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return Background(patient, volume.image, lungs, excluded)


def load_pair_background(name: str, data_root: str | Path) -> Background:
    """A training background (:data:`BACKGROUND_NAMES`) or a test patient (:data:`TEST_PATIENTS`)."""
    return load_test_background(name, data_root) if name in TEST_PATIENTS else load_background(name, data_root)


def pair_vois(data_root: str | Path, split: str, min_diameter_mm: float) -> list[VOICase]:
    """The VOIs a pair split may use: TRAINING-split VOIs for ``tune``, TEST-split VOIs for ``test``."""
    cases = cases_for_split(list_vois(Path(data_root) / "lidc_vois").cases, load_split(), VOI_SPLIT[split])
    return [c for c in cases if c.diameter_mm >= min_diameter_mm]


# -- planning ------------------------------------------------------------------------------------

def _volume_factor(rng: np.random.Generator, diameter_mm: float, config: FollowUpSimConfig) -> float:
    draw = rng.random()
    if draw < config.stable_fraction:
        low, high = config.stable_factors
    elif draw < config.stable_fraction + (1 - config.stable_fraction) * config.growth_fraction:
        low, high = config.growth_factors
    else:
        low, high = config.shrink_factors
    cap = max((config.max_diameter_mm / max(diameter_mm, 1e-6)) ** 3, 1.0)
    return float(min(rng.uniform(low, high), cap))


def plan_nodules(cases: Sequence[VOICase], rng: np.random.Generator, config: FollowUpSimConfig
                 ) -> list[PlannedNodule]:
    """Draw the pair's VOIs (no VOI twice), give each a status and the matched ones a volume factor."""
    small = [c for c in cases if c.diameter_mm < 6.0]
    large = [c for c in cases if 6.0 <= c.diameter_mm <= config.max_voi_diameter_mm]
    count = config.matched + config.resolved + config.new
    n_small = min(int(rng.binomial(count, config.small_fraction)), len(small))
    if len(large) < count - n_small:
        raise InputNotFoundError(f"only {len(large)} VOIs of >= 6 mm for {count - n_small} nodules",
                                 "point --data-root to the full lidc_vois/ folder")
    chosen = ([small[i] for i in rng.choice(len(small), n_small, replace=False)]
              + [large[i] for i in rng.choice(len(large), count - n_small, replace=False)])
    order = rng.permutation(count)
    statuses = ["matched"] * config.matched + ["resolved"] * config.resolved + ["new"] * config.new
    planned = []
    for status, index in zip(statuses, order):
        case = chosen[int(index)]
        factor = _volume_factor(rng, case.diameter_mm, config) if status == "matched" else None
        planned.append(PlannedNodule(case, augment_voi(case.load(), rng), status, factor))
    return planned


def scaled(sample: VOISample, factor: float) -> VOISample:
    """The VOI with its volume multiplied by ``factor`` (image and mask rescaled about their grid)."""
    z, y, x = (float(s) * factor ** (1.0 / 3.0) for s in sample.spacing_zyx)
    return replace(sample, spacing_zyx=(z, y, x))


def _site_background(background: Background, config: FollowUpSimConfig) -> Background:
    """The background with the first and last ``edge_margin_mm`` of slices excluded from the sites."""
    excluded = background.excluded.copy()
    edge = int(math.ceil(config.edge_margin_mm / background.image.GetSpacing()[2]))
    excluded[:edge] = True
    excluded[-edge:] = True
    return replace(background, excluded=excluded)


def choose_sites(background: Background, planned: Sequence[PlannedNodule], rng: np.random.Generator,
                 config: FollowUpSimConfig) -> list[tuple[PlannedNodule, np.ndarray]]:
    """A lung site (LPS mm, prior frame) per nodule, chosen at the larger of its two sizes.

    Nodules without a valid site are left out (with a log line from ``place_nodules``).
    """
    largest = [scaled(p.sample, max(p.factor or 1.0, 1.0)) for p in planned]
    placed = place_nodules(_site_background(background, config), largest, rng, config.insertion)
    by_case = {n.case_id: np.asarray(n.centre_lps_mm) for n in placed.nodules}
    return [(p, by_case[p.sample.case_id]) for p in planned if p.sample.case_id in by_case]


# -- the transform -------------------------------------------------------------------------------

def _centre(image: sitk.Image) -> np.ndarray:
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()]))


def random_affine(image: sitk.Image, rng: np.random.Generator, config: FollowUpSimConfig) -> sitk.AffineTransform:
    """A small rotation, per-axis scale and translation about the scan centre (prior -> current)."""
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    scale = np.diag(1.0 + rng.uniform(-config.max_scale, config.max_scale, size=3))
    direction = rng.normal(size=3)
    translation = direction / np.linalg.norm(direction) * rng.uniform(0.0, config.max_translation_mm)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((rotation @ scale).ravel().tolist())
    affine.SetCenter(_centre(image).tolist())
    affine.SetTranslation(translation.tolist())
    return affine


def _lung_z_range(background: Background) -> tuple[float, float]:
    """LPS z (mm) of the lowest and highest lung slice."""
    rows = np.nonzero(sitk.GetArrayViewFromImage(background.lungs).any(axis=(1, 2)))[0]
    ends = [background.image.TransformIndexToPhysicalPoint([0, 0, int(k)])[2] for k in (rows[0], rows[-1])]
    return min(ends), max(ends)


def breathing_field(grid: sitk.Image, lung_z: tuple[float, float], rng: np.random.Generator,
                    config: FollowUpSimConfig) -> tuple[sitk.DisplacementFieldTransform, float]:
    """The deformation ``q -> q + v(q)`` over ``grid``'s extent, largest at the lung bases.

    ``v`` points along a mostly craniocaudal direction (a random sign, a third as much
    front-to-back); its length is ``amplitude x w(z) x exp(-r^2 / 2 sigma^2)`` with ``w`` a
    smoothstep from 0 at the top of the lungs to 1 at their base and ``r`` the in-plane distance
    from the scan's centre axis.
    """
    amplitude = rng.uniform(*config.deformation_mm)
    direction = np.array([0.0, rng.choice([-1.0, 1.0]) / 3.0, rng.choice([-1.0, 1.0])])
    direction /= np.linalg.norm(direction)
    corners = np.array([grid.TransformIndexToPhysicalPoint([i * (n - 1) for i, n in zip(c, grid.GetSize())])
                        for c in np.ndindex(2, 2, 2)])
    lower = corners.min(axis=0) - 2 * config.field_spacing_mm
    size = np.ceil((corners.max(axis=0) - lower) / config.field_spacing_mm).astype(int) + 3
    axes = [lower[i] + np.arange(size[i]) * config.field_spacing_mm for i in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    bottom, top = lung_z
    t = np.clip((top - zz) / max(top - bottom, 1.0), 0.0, 1.0)
    centre = _centre(grid)
    radial = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * config.breathing_sigma_mm ** 2))
    length = amplitude * t * t * (3 - 2 * t) * radial
    vectors = length[..., None] * direction
    image = sitk.GetImageFromArray(vectors.astype(np.float64), isVector=True)
    image.SetOrigin(lower.tolist())
    image.SetSpacing([config.field_spacing_mm] * 3)
    return sitk.DisplacementFieldTransform(image), float(length.max())


def current_grid(prior: sitk.Image, slice_spacing_mm: float) -> sitk.Image:
    """An empty int16 grid with the prior's field of view and in-plane spacing and another slice spacing."""
    size = list(prior.GetSize())
    spacing = list(prior.GetSpacing())
    size[2] = int(math.floor((size[2] - 1) * spacing[2] / slice_spacing_mm)) + 1
    spacing[2] = slice_spacing_mm
    grid = sitk.Image(size, sitk.sitkInt16)
    grid.SetSpacing(spacing)
    grid.SetOrigin(prior.GetOrigin())
    grid.SetDirection(prior.GetDirection())
    return grid


def _other_spacing(prior_spacing: float, rng: np.random.Generator, config: FollowUpSimConfig) -> float:
    choices = [s for s in config.slice_spacings_mm if abs(s - prior_spacing) > 0.2]
    return float(rng.choice(choices))


# -- pasting and measuring -----------------------------------------------------------------------

def _inside(grid: sitk.Image, point: np.ndarray, margin_mm: float) -> bool:
    """Whether ``point`` lies at least ``margin_mm`` inside the grid along every axis."""
    index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(point.tolist()))
    margin = margin_mm / np.asarray(grid.GetSpacing())
    return bool(np.all(index >= margin) and np.all(index <= np.asarray(grid.GetSize()) - 1 - margin))


def _extent_mm(sample: VOISample) -> float:
    return 0.5 * float(np.max(np.asarray(sample.mask.shape) * np.asarray(sample.spacing_zyx)))


def paste_and_measure(arrays: tuple[np.ndarray, np.ndarray], grid: sitk.Image, sample: VOISample,
                      centre: Point, value: int, config: InsertionConfig) -> dict[str, Any]:
    """Paste a VOI at ``centre`` into ``arrays`` (HU and labels of ``grid``, modified in place) and measure its mask.

    The pasted mask is marked ``value`` in the label array.

    Returns:
        The truth record of that scan: ``centre_lps_mm``, ``volume_mm3``, ``mean_diameter_mm``,
        ``long_axis_mm``, ``short_axis_mm``.
    """
    pasted = paste_weights(grid, sample, [float(v) for v in centre], config)
    if pasted is None or not pasted[3].any():
        raise ValueError(f"{sample.case_id} falls outside the scan at {list(centre)}")
    region, hu, weight, mask = pasted
    blend(arrays[0], region, hu, weight)
    arrays[1][region][mask] = value
    spacing_zyx = tuple(float(s) for s in grid.GetSpacing()[::-1])
    centroid = np.argwhere(mask).mean(axis=0) + np.array([s.start for s in region])
    point = grid.TransformContinuousIndexToPhysicalPoint([float(v) for v in centroid[::-1]])
    axes = axial_diameters(mask, spacing_zyx)  # type: ignore[arg-type]  # three floats
    return {"centre_lps_mm": [round(float(v), 3) for v in point],
            "volume_mm3": round(float(mask.sum()) * float(np.prod(spacing_zyx)), 3),
            "mean_diameter_mm": round(axes.mean_mm, 3), "long_axis_mm": round(axes.long_axis_mm, 3),
            "short_axis_mm": round(axes.short_axis_mm, 3)}


def _image_like(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


def add_noise(array: np.ndarray, sigma_hu: float, rng: np.random.Generator) -> None:
    """Add Gaussian noise to an int16 HU array in place, slice by slice (clipped to -1024..3071)."""
    for k in range(array.shape[0]):
        noisy = array[k] + rng.standard_normal(array.shape[1:], dtype=np.float32) * np.float32(sigma_hu)
        array[k] = np.clip(np.round(noisy), AIR_HU, 3071).astype(array.dtype)


# -- truth ---------------------------------------------------------------------------------------

def vdt_days(interval_days: int, prior_volume: float, current_volume: float) -> float | None:
    """Volume doubling time ``interval x ln 2 / ln(V2 / V1)``; ``None`` unless the nodule grew."""
    if current_volume <= prior_volume or prior_volume <= 0:
        return None
    return float(interval_days * math.log(2.0) / math.log(current_volume / prior_volume))


def nodule_truth(index: int, planned: PlannedNodule, prior: dict[str, Any] | None, current: dict[str, Any] | None,
                 interval_days: int) -> dict[str, Any]:
    """One ``truth.json`` nodule record."""
    growth: dict[str, Any] = {"volume_factor": None, "vdt_days": None, "lung_rads_growth": None}
    if prior is not None and current is not None:
        vdt = vdt_days(interval_days, prior["volume_mm3"], current["volume_mm3"])
        growth = {"volume_factor": round(float(planned.factor or 1.0), 4),
                  "vdt_days": None if vdt is None else round(vdt, 2),
                  "lung_rads_growth": bool(current["mean_diameter_mm"] - prior["mean_diameter_mm"] > GROWTH_MM)}
    texture = int(round(float(planned.case.analysis.get("Texture_value") or 0)))
    return {"id": f"n{index}", "voi": planned.case.case_id, "texture": texture, "status": planned.status,
            "prior": prior, "current": current, **growth}


def _dates(rng: np.random.Generator, config: FollowUpSimConfig) -> tuple[str, str, int]:
    interval = int(rng.choice(config.intervals_days)) + int(rng.integers(-config.interval_jitter_days,
                                                                         config.interval_jitter_days + 1))
    prior = datetime.date(2016, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 1500)))
    return prior.isoformat(), (prior + datetime.timedelta(days=interval)).isoformat(), interval


# -- one pair ------------------------------------------------------------------------------------

def _make_transform(background: Background, grid: sitk.Image, rng: np.random.Generator,
                    config: FollowUpSimConfig) -> PairTransform:
    affine = random_affine(background.image, rng, config)
    field_transform, largest = breathing_field(grid, _lung_z_range(background), rng, config)
    return PairTransform(affine, field_transform, largest)


def simulate_pair(background: Background, cases: Sequence[VOICase], spec: PairSpec,
                  config: FollowUpSimConfig | None = None) -> SimulatedPair:
    """Make one pair from a loaded background and the VOIs it may use (see the module docstring).

    Args:
        background: the real scan, its lungs and its excluded regions.
        cases: the VOIs of the pair's VOI split (:func:`pair_vois`).
        spec: the pair's id, split and seed.
        config: the simulation parameters.

    Returns:
        The prior and current scans (int16 HU) and the truth record.
    """
    cfg = config or FollowUpSimConfig()
    rng = np.random.default_rng(list(spec.seed))
    planned = plan_nodules(cases, rng, cfg)
    sites = choose_sites(background, planned, rng, cfg)
    grid = current_grid(background.image, _other_spacing(background.image.GetSpacing()[2], rng, cfg))
    transform = _make_transform(background, grid, rng, cfg)
    sites = [(p, site) for p, site in sites
             if _inside(grid, transform.to_current(site), _extent_mm(scaled(p.sample, max(p.factor or 1.0, 1.0))))]
    prior_arrays = (sitk.GetArrayFromImage(background.image), np.zeros(background.excluded.shape, np.uint8))
    current_hu = sitk.GetArrayFromImage(sitk.Resample(background.image, grid, transform.current_to_prior(),
                                                      sitk.sitkLinear, AIR_HU, sitk.sitkInt16))
    current_arrays = (current_hu, np.zeros(current_hu.shape, np.uint8))
    prior_date, current_date, interval = _dates(rng, cfg)
    nodules = []
    for index, (plan, site) in enumerate(sites, start=1):
        prior = None if plan.status == "new" else paste_and_measure(prior_arrays, background.image, plan.sample,
                                                                    site, index, cfg.insertion)
        current = None
        if plan.status != "resolved":
            target = transform.to_current(prior["centre_lps_mm"] if prior else site)
            current = paste_and_measure(current_arrays, grid, scaled(plan.sample, plan.factor or 1.0), target, index,
                                        cfg.insertion)
        nodules.append(nodule_truth(index, plan, prior, current, interval))
    noise = float(rng.uniform(*cfg.noise_hu))
    add_noise(current_hu, noise, rng)
    truth = {"schema": TRUTH_SCHEMA, "schema_version": TRUTH_VERSION, "pair_id": spec.pair_id, "split": spec.split,
             "background": spec.background, "prior_date": prior_date, "current_date": current_date,
             "interval_days": interval,
             "transform": {"prior_to_current_affine_lps": transform.affine_matrix(),
                           "deformation_max_mm": round(transform.max_displacement_mm, 3)},
             "nodules": nodules}
    logger.info("%s: %d nodules, slice %.2f -> %.2f mm, noise %.0f HU, interval %d days", spec.pair_id, len(nodules),
                background.image.GetSpacing()[2], grid.GetSpacing()[2], noise, interval)
    return SimulatedPair(_image_like(prior_arrays[0], background.image), _image_like(current_hu, grid), truth,
                         (prior_arrays[1], current_arrays[1]), transform)


def write_pair(pair: SimulatedPair, folder: Path) -> None:
    """Write ``prior.nrrd``, ``current.nrrd`` (int16, gzip) and ``truth.json`` into ``folder``."""
    folder.mkdir(parents=True)
    sitk.WriteImage(pair.prior, str(folder / "prior.nrrd"), True)
    sitk.WriteImage(pair.current, str(folder / "current.nrrd"), True)
    (folder / "truth.json").write_text(json.dumps(pair.truth, indent=1) + "\n", encoding="utf-8")


# -- the set -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FollowUpSetConfig:
    """A set of pairs.

    Attributes:
        data_root: the shared data folder (``lidc_scans/``, ``lidc_vois/``, ``backgrounds/``, ``lung_pet_ct_dx/``).
        out: the folder to create (``pairs.csv`` and one folder per pair).
        tune: number of tune pairs (alternating over the training backgrounds).
        test: number of test pairs (alternating over LIDC-IDRI-0001 and 0002).
        seed: the seed of every pair's generator.
        overwrite: replace an existing ``out``.
        simulation: the per-pair parameters.
    """

    data_root: Path
    out: Path
    tune: int = 4
    test: int = 10
    seed: int = 0
    overwrite: bool = False
    simulation: FollowUpSimConfig = field(default_factory=FollowUpSimConfig)


def pair_specs(split: str, count: int, seed: int) -> list[PairSpec]:
    """The pairs of one split: ids ``<split>_<NN>_<background>``, backgrounds taken in turn."""
    names = background_names(split)
    code = list(VOI_SPLIT).index(split)
    return [PairSpec(f"{split}_{i:02d}_{names[i % len(names)]}", split, names[i % len(names)], (seed, code, i))
            for i in range(count)]


def _csv_row(spec: PairSpec, truth: dict[str, Any]) -> dict[str, str]:
    return {"pair_id": spec.pair_id, "split": spec.split, "background": spec.background,
            "prior": f"{spec.pair_id}/prior.nrrd", "current": f"{spec.pair_id}/current.nrrd",
            "prior_date": truth["prior_date"], "current_date": truth["current_date"]}


def make_pairs(config: FollowUpSetConfig) -> Path:
    """Generate the tune and test pairs into ``config.out`` (all or nothing) and return ``pairs.csv``.

    Raises:
        ValueError: no pairs asked for.
        InputNotFoundError: a scan or the VOIs are not in ``data_root``.
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
    """
    if config.tune < 0 or config.test < 0 or config.tune + config.test == 0:
        raise ValueError("ask for at least one pair (tune and test counts are >= 0)")
    specs = pair_specs("tune", config.tune, config.seed) + pair_specs("test", config.test, config.seed)
    rows = []
    with staged_output(config.out, config.overwrite) as folder:
        for split in VOI_SPLIT:
            chosen = [s for s in specs if s.split == split]
            if not chosen:
                continue
            cases = pair_vois(config.data_root, split, config.simulation.min_diameter_mm)
            for name in dict.fromkeys(s.background for s in chosen):
                background = load_pair_background(name, config.data_root)
                for spec in (s for s in chosen if s.background == name):
                    start = time.perf_counter()
                    pair = simulate_pair(background, cases, spec, config.simulation)
                    write_pair(pair, folder / spec.pair_id)
                    rows.append(_csv_row(spec, pair.truth))
                    logger.info("%s written in %.1f s", spec.pair_id, time.perf_counter() - start)
        order = {s.pair_id: i for i, s in enumerate(specs)}
        rows.sort(key=lambda r: order[r["pair_id"]])
        with (folder / PAIRS_CSV).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=PAIRS_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return config.out / PAIRS_CSV
