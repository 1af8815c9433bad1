"""Simulated emphysema inside a real lung mask: centrilobular, panlobular and paraseptal.

No CT with emphysema labels is available to LungAI's developers, so the emphysema models are
trained on real chest CT into which emphysema is simulated. Emphysema is loss of lung tissue:
a voxel's density moves from that of parenchyma (about -850 HU) towards that of air
(-1000 HU). The simulator removes a fraction ``d`` (0..1) of the tissue of each lung voxel::

    HU' = HU - blur(d) * spare * (smooth(HU) + 1000)

``smooth(HU)`` is the local mean density (what there is to remove); ``spare`` keeps vessels and
other dense structures (local mean above about -600 HU) as they are, as emphysema leaves the
vessels standing; ``blur`` is a Gaussian of the scan's own point-spread function, so lesion
edges have the scan's partial-volume blur. Only a smooth field is subtracted, so the scan's own
noise stays in place, and noise and blur of the result match the scan. Nothing outside the lung
mask changes.

The patterns, as radiology describes them:

* ``centrilobular``: many small round low-attenuation spots (3-8 mm), more frequent towards
  the lung apices (upper-zone predominance).
* ``panlobular``: diffuse, uniform loss of attenuation in the lower zones.
* ``paraseptal``: subpleural bullae (8-24 mm) that abut the pleura, a little more frequent
  in the upper zones.

Severity is the percentage of lung voxels below -950 HU (LAA-950) of the result: the amount of
emphysema (number of spots, depth of the diffuse loss) is found by bisection until the result's
LAA-950 is within ``tolerance_pp`` of the requested value. A severity below the scan's own
LAA-950 (its noise already puts some voxels below -950 HU) cannot be produced.

Arrays are ``(z, y, x)`` with axis 0 running inferior -> superior (LPS, as
:mod:`lungai.io.volume_arrays` makes them), so "upper" is high ``z``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungai.preprocessing.emphysema_input import LAA_THRESHOLD_HU, laa_percent

logger = logging.getLogger(__name__)

PATTERNS = ("centrilobular", "panlobular", "paraseptal")
AIR_HU = -1000.0
_HU_MIN, _HU_MAX = -1024, 3071


@dataclass(frozen=True)
class EmphysemaSpec:
    """What to simulate.

    Attributes:
        pattern: one of :data:`PATTERNS`.
        severity_percent: the LAA-950 (% of lung voxels below -950 HU) the result must have.
        tolerance_pp: how close (percentage points) the result must come.
        max_iterations: bisection steps at most.
    """

    pattern: str
    severity_percent: float
    tolerance_pp: float = 0.3
    max_iterations: int = 24

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown emphysema pattern {self.pattern!r}; choose one of {', '.join(PATTERNS)}")
        if not 0 <= self.severity_percent <= 100:
            raise ValueError(f"severity must be a percentage, got {self.severity_percent}")


@dataclass(frozen=True)
class ScanTexture:
    """Noise and blur of a scan, measured in its lung parenchyma.

    Attributes:
        noise_hu: standard deviation of the high-pass residual (``HU - gaussian(HU, 1 voxel)``)
            in the parenchyma: a relative noise level, comparable between scans.
        psf_sigma_mm: Gaussian point-spread sigma per axis (z, y, x), from the lag-1
            autocorrelation ``rho`` of that residual: noise filtered by a Gaussian of sigma
            ``s`` voxels has ``rho = exp(-1 / (4 s^2))``. Clipped to 0.35-2 voxels.
    """

    noise_hu: float
    psf_sigma_mm: tuple[float, float, float]


@dataclass(frozen=True)
class SimulationResult:
    """A simulated volume.

    Attributes:
        hu: the result, int16 HU, same shape as the input.
        lesion: voxels the simulation moved below -950 HU (the simulated low-attenuation area).
        pattern: the pattern simulated.
        requested_percent: the requested LAA-950.
        baseline_percent: the input's own LAA-950.
        achieved_percent: the result's LAA-950.
        amount: the bisected amount (number of spots, or the diffuse loss's scale).
        texture: the scan's noise and blur the lesions were matched to.
    """

    hu: np.ndarray
    lesion: np.ndarray
    pattern: str
    requested_percent: float
    baseline_percent: float
    achieved_percent: float
    amount: float
    texture: ScanTexture





def estimate_texture(hu: np.ndarray, lung: np.ndarray, spacing_zyx: tuple[float, float, float]) -> ScanTexture:
    """Measure noise level and point-spread width of a scan in its parenchyma.

    Args:
        hu: ``(z, y, x)`` HU.
        lung: lung mask of the same shape.
        spacing_zyx: voxel spacing in mm.

    Returns:
        The texture (see :class:`ScanTexture`).
    """
    x = hu.astype(np.float32)
    residual = x - ndimage.gaussian_filter(x, 1.0)
    core = ndimage.binary_erosion(lung, iterations=2) & (x > -990) & (x < -700)
    if np.count_nonzero(core) < 100:
        core = lung
    noise = float(residual[core].std())
    sigmas = []
    for axis, spacing in enumerate(spacing_zyx):
        ahead = np.roll(core, -1, axis=axis)
        pairs = core & ahead
        a, b = residual[pairs], np.roll(residual, -1, axis=axis)[pairs]
        rho = float(np.corrcoef(a, b)[0, 1]) if a.size > 10 else 0.0
        sigma_vox = np.sqrt(-1.0 / (4.0 * np.log(rho))) if 0.0 < rho < 1.0 else 0.35
        sigmas.append(float(np.clip(sigma_vox, 0.35, 2.0)) * spacing)
    return ScanTexture(noise_hu=noise, psf_sigma_mm=tuple(sigmas))  # type: ignore[arg-type]  # one sigma per axis (three); mypy cannot count a list's length


class _Renderer:
    """Applies a tissue-loss field to a scan and measures the result's LAA-950."""

    def __init__(self, hu: np.ndarray, lung: np.ndarray, texture: ScanTexture,
                 spacing_zyx: tuple[float, float, float]) -> None:
        self.hu = hu
        self.lung = lung
        x = hu.astype(np.float32)
        local = ndimage.gaussian_filter(x, 1.0)
        spare = np.clip((-600.0 - local) / 150.0, 0.0, 1.0)
        self.removable = np.where(lung, spare * np.maximum(local - AIR_HU, 0.0), 0.0).astype(np.float32)
        self.sigma_vox = tuple(s / sp for s, sp in zip(texture.psf_sigma_mm, spacing_zyx))

    def loss(self, tissue_loss: np.ndarray) -> np.ndarray:
        """Blurred tissue loss, restricted to the lung."""
        return np.clip(ndimage.gaussian_filter(tissue_loss.astype(np.float32), self.sigma_vox), 0, 1) * self.lung

    def apply(self, tissue_loss: np.ndarray) -> np.ndarray:
        """The result (int16): the scan with the blurred loss removed inside the lung."""
        result = self.hu.astype(np.float32) - self.loss(tissue_loss) * self.removable
        return np.where(self.lung, np.clip(np.rint(result), _HU_MIN, _HU_MAX), self.hu).astype(np.int16)

    def laa(self, tissue_loss: np.ndarray) -> float:
        """LAA-950 of the result for a loss field."""
        return laa_percent(self.apply(tissue_loss), self.lung)


def _relative_height(lung: np.ndarray) -> np.ndarray:
    """Per slice, 0 at the lowest lung slice and 1 at the highest (axis 0 is inferior -> superior)."""
    slices = np.nonzero(lung.any(axis=(1, 2)))[0]
    low, high = slices[0], slices[-1]
    return np.clip((np.arange(lung.shape[0]) - low) / max(high - low, 1), 0.0, 1.0)


class _Spots:
    """Round lesions in a fixed random order; the first ``n`` make the tissue-loss field.

    ``first[v]`` is the index of the first spot covering voxel ``v`` (a large number if none),
    so the field of ``n`` spots is ``first < n`` and grows monotonically with ``n``. Centrilobular
    spots are centred at least 3 mm inside the lung; a paraseptal bulla of radius ``r`` is
    centred about ``0.7 r`` from the pleura, so it abuts it.
    """

    _NONE = np.iinfo(np.int32).max

    def __init__(self, lung: np.ndarray, spacing_zyx: tuple[float, float, float], pattern: str,
                 rng: np.random.Generator, coverage: float) -> None:
        self.first = np.full(lung.shape, self._NONE, np.int32)
        self.spacing = np.asarray(spacing_zyx, dtype=float)
        depth = ndimage.distance_transform_edt(lung, sampling=self.spacing)
        height = _relative_height(lung)[:, None, None]
        if pattern == "centrilobular":
            radius_bins = [(1.5, 4.0, np.exp(3.0 * height) * (depth > 3.0))]
        else:
            edges = np.linspace(4.0, 12.0, 5)
            radius_bins = [(a, b, np.exp(1.0 * height) * (np.abs(depth - 0.35 * (a + b)) <= 1.5))
                           for a, b in zip(edges[:-1], edges[1:])]
        candidates = []
        for low, high, weights in radius_bins:
            flat = np.flatnonzero(weights * lung)
            if flat.size:
                p = weights.ravel()[flat]
                candidates.append((low, high, flat, p / p.sum()))
        if not candidates:
            raise ValueError("the lung mask is too thin to place emphysema in")
        target = coverage * int(np.count_nonzero(lung))
        covered, self.count = 0, 0
        while covered < target and self.count < 200_000:
            low, high, flat, p = candidates[int(rng.integers(len(candidates)))]
            centres = np.column_stack(np.unravel_index(rng.choice(flat, size=64, p=p), lung.shape))
            for centre, radius in zip(centres, rng.uniform(low, high, size=64)):
                covered += self._paint(centre, float(radius), lung)
                self.count += 1

    def _paint(self, centre: np.ndarray, radius: float, lung: np.ndarray) -> int:
        half = np.ceil(radius / self.spacing).astype(int)
        low = np.maximum(centre - half, 0)
        high = np.minimum(centre + half + 1, lung.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        grids = np.ogrid[tuple(slice(a - c, b - c) for a, b, c in zip(low, high, centre))]
        inside = sum((g * s) ** 2 for g, s in zip(grids, self.spacing)) <= radius ** 2
        region = self.first[box]
        new = inside & lung[box] & (region == self._NONE)
        region[new] = self.count
        return int(np.count_nonzero(new))

    def field(self, n: float) -> np.ndarray:
        """Tissue loss of the first ``n`` spots (full loss inside them)."""
        return (self.first < int(round(n))).astype(np.float32)


def _panlobular_field(lung: np.ndarray, rng: np.random.Generator,
                      spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Relative diffuse-loss strength: highest in the lower zones, with smooth lobular variation."""
    height = _relative_height(lung)[:, None, None]
    lower = 1.0 / (1.0 + np.exp((height - 0.45) / 0.1))
    noise = ndimage.gaussian_filter(rng.standard_normal(lung.shape).astype(np.float32),
                                    [12.0 / s for s in spacing_zyx])
    noise = (noise - noise.mean()) / (noise.std() + 1e-6)
    return (lower * np.clip(1.0 + 0.25 * noise, 0.3, 1.7) * lung).astype(np.float32)


def _bisect(laa_of: Callable[[float], float], target: float, high: float, spec: EmphysemaSpec,
            integer: bool) -> tuple[float, float]:
    """Smallest amount in [0, high] whose LAA-950 reaches ``target`` (within the tolerance)."""
    low, best, best_laa = 0.0, high, laa_of(high)
    if best_laa < target - spec.tolerance_pp:
        raise ValueError(f"LAA-950 {target:.1f} % cannot be reached with {spec.pattern} emphysema in this lung "
                         f"(at most {best_laa:.1f} %)")
    for _ in range(spec.max_iterations):
        mid = (low + high) / 2
        if integer:
            mid = float(round(mid))
        value = laa_of(mid)
        if abs(value - target) < abs(best_laa - target):
            best, best_laa = mid, value
        if abs(value - target) <= spec.tolerance_pp:
            return mid, value
        if value < target:
            low = mid
        else:
            high = mid
        if integer and high - low <= 1:
            break
    return best, best_laa


def simulate_emphysema(hu: np.ndarray, lung: np.ndarray, spacing_zyx: tuple[float, float, float],
                       spec: EmphysemaSpec, rng: np.random.Generator,
                       texture: ScanTexture | None = None) -> SimulationResult:
    """Simulate one emphysema pattern in a scan so that its LAA-950 is the requested severity.

    Args:
        hu: ``(z, y, x)`` HU, axis 0 inferior -> superior; not modified.
        lung: lung mask of the same shape.
        spacing_zyx: voxel spacing in mm.
        spec: pattern and severity.
        rng: the random generator (lesion positions and sizes).
        texture: the scan's noise and blur; measured with :func:`estimate_texture` when ``None``.

    Returns:
        The simulated volume and what was done.

    Raises:
        ValueError: the mask is empty or does not fit, the severity is below the scan's own
            LAA-950 or above what the pattern can produce in this lung.
    """
    lung = np.asarray(lung, dtype=bool)
    if lung.shape != hu.shape:
        raise ValueError(f"lung mask {lung.shape} and scan {hu.shape} differ in shape")
    baseline = laa_percent(hu, lung)
    target = spec.severity_percent
    if target < baseline - spec.tolerance_pp:
        raise ValueError(f"severity {target:.1f} % is below the scan's own LAA-950 ({baseline:.1f} %)")
    texture = texture or estimate_texture(hu, lung, spacing_zyx)
    renderer = _Renderer(hu, lung, texture, spacing_zyx)
    if spec.pattern == "panlobular":
        strength = _panlobular_field(lung, rng, spacing_zyx)
        amount, achieved = _bisect(lambda a: renderer.laa(np.clip(a * strength, 0, 1)), target, 4.0, spec, False)
        loss = np.clip(amount * strength, 0, 1)
    else:
        # Spots overlap and spare vessels: cover more of the lung than the LAA to be added,
        # and more again when that was not enough.
        coverage = min(0.95, 1.6 * (target - baseline) / 100.0 + 0.01)
        while True:
            spots = _Spots(lung, spacing_zyx, spec.pattern, rng, coverage)
            try:
                amount, achieved = _bisect(lambda n: renderer.laa(spots.field(n)), target, float(spots.count),
                                           spec, True)
                break
            except ValueError:
                if coverage >= 0.95:
                    raise
                coverage = min(0.95, 2 * coverage)
        loss = spots.field(amount)
    result = renderer.apply(loss)
    lesion = (result < LAA_THRESHOLD_HU) & (hu >= LAA_THRESHOLD_HU)
    logger.debug("%s: LAA-950 %.2f -> %.2f %% (requested %.2f, amount %.3g)", spec.pattern, baseline, achieved,
                 target, amount)
    return SimulationResult(hu=result, lesion=lesion, pattern=spec.pattern, requested_percent=target,
                            baseline_percent=baseline, achieved_percent=achieved, amount=amount, texture=texture)
