"""A simulated weak-label emphysema dataset: many distinct volumes from a few real scans.

``lungai data simulate-emphysema --out DIR --n 300 --seed 0`` writes ``DIR/volumes/*.nrrd`` and
``DIR/labels.csv`` (the weak-label CSV of :mod:`lungai.data.weak_labels`, with extra columns
recording what was simulated). Each volume ``k`` is drawn from ``numpy.random.default_rng([seed, k])``:

1. a source scan (the sources take turns), cropped to its lungs plus a random 0-15 mm margin;
2. a random grid (1.8-2.6 mm in-plane, 3-5 mm between slices, never finer than the source);
3. a random left-right flip;
4. a random reconstruction kernel: smoother (Gaussian), as is, or sharper (unsharp mask), and
   extra correlated noise up to the scan's own noise level; all of these change how many
   voxels the scan's noise alone puts below -950 HU;
5. emphysema: with probability ``none_fraction`` none; otherwise a pattern of
   :data:`lungai.data.emphysema_sim.PATTERNS` whose *extent* (LAA-950 added to the volume's
   own, percentage points) is drawn half from 0.5-4 pp and half from 4-20 pp.

The label is 1 when the extent is at least ``label_threshold_pp`` (default 2 pp). Volumes with
trace emphysema below the threshold are labelled 0, and noisy, sharp-kernel volumes without
emphysema can have a higher LAA-950 than smooth volumes with it, so LAA-950 alone does not
separate the classes. Each volume is its own ``patient_id`` (``<source>-<k>``); the ``source``
column says which real scan it came from (every volume shares the anatomy of its source).

Only real whole-thorax scans that are not LungAI's test patients may be sources: LIDC-IDRI-0001,
0002 and 0003 are refused.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.data.emphysema_sim import PATTERNS, EmphysemaSpec, estimate_texture, simulate_emphysema
from lungai.data.holdout import WHOLE_SCAN_TEST_PATIENTS, is_held_out
from lungai.errors import UnreadableInputError
from lungai.io.reader import read_scan, scan_stem
from lungai.preprocessing.emphysema_input import laa_percent
from lungai.preprocessing.lung_mask import segment_lungs

logger = logging.getLogger(__name__)

#: The real scans simulated emphysema may be put into, relative to the shared data folder.
DEFAULT_SOURCES = ("backgrounds/elastix_chest.nrrd", "lung_pet_ct_dx/A0001/dicom.zip")
CSV_NAME = "labels.csv"
VOLUME_DIR = "volumes"
COLUMNS = ("path", "label", "patient_id", "source", "pattern", "extent_pp", "severity_percent",
           "laa950_percent", "baseline_laa950_percent", "noise_hu", "psf_sigma_xy_mm", "kernel",
           "spacing_xy_mm", "spacing_z_mm", "flipped")


@dataclass(frozen=True)
class SimulationSetConfig:
    """What dataset to make.

    Attributes:
        sources: real chest CT scans (any format :func:`lungai.io.reader.read_scan` reads).
        out: the dataset folder (must not hold a dataset yet).
        n: number of volumes.
        seed: the seed; the same seed, sources and n give the same dataset.
        none_fraction: share of volumes without emphysema.
        label_threshold_pp: extent (pp of LAA-950 added) from which a volume is labelled 1.
        spacing_xy_mm: range of the in-plane spacing.
        spacing_z_mm: range of the slice spacing.
    """

    sources: tuple[Path, ...]
    out: Path
    n: int = 300
    seed: int = 0
    none_fraction: float = 0.4
    label_threshold_pp: float = 2.0
    spacing_xy_mm: tuple[float, float] = (1.8, 2.6)
    spacing_z_mm: tuple[float, float] = (3.0, 5.0)


@dataclass
class _Source:
    """A source scan cropped to its lungs (plus the widest margin), in LPS."""

    name: str
    image: sitk.Image
    lungs: sitk.Image
    margin_mm: float


def check_source(path: Path) -> None:
    """Refuse LungAI's whole-scan test patients as simulation sources.

    Raises:
        UnreadableInputError: the path names LIDC-IDRI-0001, 0002 or 0003.
    """
    if any(part in WHOLE_SCAN_TEST_PATIENTS for part in Path(path).parts) or any(
            patient in Path(path).name for patient in WHOLE_SCAN_TEST_PATIENTS):
        raise UnreadableInputError(f"{path} is one of LungAI's whole-scan test patients",
                                   "never simulate training data on LIDC-IDRI-0001..0003")


def _load_source(path: Path, margin_mm: float) -> _Source:
    check_source(path)
    volume = read_scan(path)
    if volume.patient_id and is_held_out(volume.patient_id) or volume.series_uid and is_held_out(volume.series_uid):
        raise UnreadableInputError(f"{path} is one of LungAI's whole-scan test patients",
                                   "never simulate training data on LIDC-IDRI-0001..0003")
    image = sitk.DICOMOrient(volume.image, "LPS")
    lungs = sitk.DICOMOrient(segment_lungs(volume.image).labels, "LPS")
    mask = sitk.GetArrayViewFromImage(lungs) > 0
    spacing = np.array(image.GetSpacing())[::-1]
    occupied = np.nonzero(mask)
    margin = np.ceil(margin_mm / spacing).astype(int)
    low = np.maximum([a.min() for a in occupied] - margin, 0)
    high = np.minimum([a.max() + 1 for a in occupied] + margin, mask.shape)
    index = [int(v) for v in low[::-1]]
    size = [int(v) for v in (high - low)[::-1]]
    crop = sitk.RegionOfInterest(image, size, index), sitk.RegionOfInterest(lungs, size, index)
    logger.info("source %s: %s voxels around the lungs", path, crop[0].GetSize())
    return _Source(scan_stem(path) if path.name != "dicom.zip" else path.parent.name, crop[0], crop[1], margin_mm)


def _resample(source: _Source, rng: np.random.Generator, config: SimulationSetConfig) -> tuple[sitk.Image, sitk.Image]:
    """The source on a random grid, with a random margin around the lungs."""
    native = source.image.GetSpacing()
    xy = max(float(rng.uniform(*config.spacing_xy_mm)), native[0])
    z = max(float(rng.uniform(*config.spacing_z_mm)), native[2])
    spacing = (xy, xy, z)
    mask = sitk.GetArrayViewFromImage(source.lungs) > 0
    occupied = np.nonzero(mask)
    low_idx = np.array([a.min() for a in occupied])[::-1]
    high_idx = np.array([a.max() for a in occupied])[::-1]
    low = np.array(source.image.TransformIndexToPhysicalPoint([int(v) for v in low_idx]))
    high = np.array(source.image.TransformIndexToPhysicalPoint([int(v) for v in high_idx]))
    margins = rng.uniform(0.0, source.margin_mm, size=(2, 3))
    origin = low - margins[0]
    size = [int(np.ceil((h - lo + m) / s)) for h, lo, m, s in zip(high, origin, margins[1], spacing)]
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    image = sitk.Resample(source.image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing,
                          identity, -1024.0, sitk.sitkFloat32)
    lungs = sitk.Resample(source.lungs, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin.tolist(), spacing,
                          identity, 0, sitk.sitkUInt8)
    return image, lungs


def _kernel(hu: np.ndarray, rng: np.random.Generator, noise_hu: float,
            sigma_vox: tuple[float, float, float]) -> tuple[np.ndarray, str]:
    """A random reconstruction-kernel change and extra correlated noise, on the whole volume."""
    kind = str(rng.choice(["smooth", "standard", "sharp"]))
    if kind == "smooth":
        hu = ndimage.gaussian_filter(hu, (0.0, *(2 * [float(rng.uniform(0.4, 0.9))])))
    elif kind == "sharp":
        amount = float(rng.uniform(0.3, 1.0))
        hu = hu + amount * (hu - ndimage.gaussian_filter(hu, (0.0, 1.0, 1.0)))
    extra = float(rng.uniform(0.0, 1.0)) * noise_hu
    if extra > 0:
        noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), sigma_vox)
        hu = hu + noise * (extra / (noise.std() + 1e-6))
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), f"{kind}+noise{extra:.0f}"


def _extent(rng: np.random.Generator, config: SimulationSetConfig) -> tuple[str, float]:
    if rng.random() < config.none_fraction:
        return "none", 0.0
    pattern = str(rng.choice(PATTERNS))
    extent = float(rng.uniform(0.5, 4.0) if rng.random() < 0.5 else rng.uniform(4.0, 20.0))
    return pattern, extent


def _write_volume(hu: np.ndarray, reference: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(hu)
    image.CopyInformation(reference)
    tmp = path.with_name(f".{path.name}.tmp.nrrd")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, path)


def make_volume(source: _Source, k: int, config: SimulationSetConfig) -> dict[str, object]:
    """Simulate volume ``k`` of the dataset and write it; returns its CSV row."""
    rng = np.random.default_rng([config.seed, k])
    image, lungs = _resample(source, rng, config)
    hu = sitk.GetArrayFromImage(image)
    lung = sitk.GetArrayFromImage(lungs) > 0
    flipped = bool(rng.random() < 0.5)
    if flipped:
        hu, lung = hu[:, :, ::-1].copy(), lung[:, :, ::-1].copy()
    spacing = (image.GetSpacing()[2], image.GetSpacing()[1], image.GetSpacing()[0])
    texture = estimate_texture(hu, lung, spacing)
    hu, kernel = _kernel(hu, rng, texture.noise_hu, tuple(s / sp for s, sp in zip(texture.psf_sigma_mm, spacing)))
    texture = estimate_texture(hu, lung, spacing)
    baseline = laa_percent(hu, lung)
    pattern, extent = _extent(rng, config)
    if pattern != "none":
        result = simulate_emphysema(hu, lung, spacing, EmphysemaSpec(pattern, min(baseline + extent, 90.0)),
                                    rng, texture)
        hu, achieved = result.hu, result.achieved_percent
    else:
        achieved = baseline
    name = f"sim_{k:04d}.nrrd"
    _write_volume(hu, image, config.out / VOLUME_DIR / name)
    return {"path": f"{VOLUME_DIR}/{name}", "label": int(pattern != "none" and extent >= config.label_threshold_pp),
            "patient_id": f"{source.name}-{k:04d}", "source": source.name, "pattern": pattern,
            "extent_pp": round(extent, 3), "severity_percent": round(baseline + extent, 3),
            "laa950_percent": round(achieved, 3), "baseline_laa950_percent": round(baseline, 3),
            "noise_hu": round(texture.noise_hu, 2), "psf_sigma_xy_mm": round(texture.psf_sigma_mm[2], 3),
            "kernel": kernel, "spacing_xy_mm": round(spacing[2], 3), "spacing_z_mm": round(spacing[0], 3),
            "flipped": int(flipped)}


def make_simulation_set(config: SimulationSetConfig) -> Path:
    """Write ``config.n`` simulated volumes and their CSV into ``config.out``.

    Returns:
        The CSV path.

    Raises:
        UnreadableInputError: a source is a whole-scan test patient, or the folder already holds
            a dataset.
        LungAIError: a source cannot be read or has no lungs.
    """
    if config.n < 1:
        raise ValueError("n must be at least 1")
    csv_path = config.out / CSV_NAME
    if csv_path.exists():
        raise UnreadableInputError(f"{csv_path} exists", "choose a new --out folder")
    for path in config.sources:
        check_source(path)
    sources = [_load_source(Path(path), margin_mm=15.0) for path in config.sources]
    (config.out / VOLUME_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(config.n):
        rows.append(make_volume(sources[k % len(sources)], k, config))
        logger.info("volume %d/%d: %s %s label %s LAA-950 %.1f %%", k + 1, config.n, rows[-1]["source"],
                    rows[-1]["pattern"], rows[-1]["label"], rows[-1]["laa950_percent"])
    _write_csv(rows, csv_path)
    return csv_path


def _write_csv(rows: Sequence[dict[str, object]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
