"""Registration of the prior scan to the current one, driven by the lung masks (SimpleITK).

The transform maps a CURRENT physical point (LPS mm) to the PRIOR physical point (SimpleITK's
resampling convention: fixed = current, moving = prior). Everything runs on copies resampled to
:attr:`RegistrationConfig.spacing_mm` (3 mm) isotropic voxels, so a chest pair takes seconds.

1. Masks: each scan's lung mask (both lungs) as a 0/1 float image, Gaussian-smoothed
   (:attr:`RegistrationConfig.mask_sigma_mm`) so the metric has a gradient at the lung edge.
2. Rigid: a 3D Euler transform started from the masks' centres of mass (moments initialiser),
   optimised on the mean squares of the smoothed masks, two levels (shrink factors 2, 1;
   smoothing sigmas 2, 0 voxels), all voxels of the fixed mask's bounding region sampled at
   :attr:`RegistrationConfig.sampling` (random, seeded).
3. Affine: an affine transform started from the rigid one, the same metric and levels: it
   takes up a different inspiration level (the lungs' scale) and patient positioning.
4. Intensity refinement: the affine is refined on the lung-windowed CT (HU clipped to
   :attr:`RegistrationConfig.window_hu`, so vessels and fissures inside the lungs drive it) with
   the Pearson correlation metric (insensitive to the noise, kernel and contrast differences
   between two scans), sampled only inside the current lungs dilated by
   :attr:`RegistrationConfig.metric_margin_mm`.
5. Each lung separately, when its Dice after step 4 is below
   :attr:`RegistrationConfig.per_lung_below_dice` (one lung moved differently): step 4 again from the
   whole-chest affine with the metric restricted to that lung; the lung's own transform is kept
   when it raises that lung's mask Dice by at least :attr:`RegistrationConfig.per_lung_min_gain`,
   and nodules in that lung are mapped with it.
6. Quality: the Dice of the current lung masks and the prior's mapped onto them (overall, left,
   right, on the 3 mm grid). Below :data:`POOR_DICE` the registration is ``poor`` (a warning: its
   matches are unreliable); below :data:`NO_OVERLAP_DICE` the scans do not overlap
   (:class:`~lungai.errors.RegistrationError`).

A B-spline stage is not used: no tuning pairs have shown that it improves the matches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.errors import RegistrationError

logger = logging.getLogger(__name__)

#: Lung-mask Dice below which the registration is reported ``poor``. Two scans of one patient
#: a year apart, both at full inspiration, align to well above it; a Dice under it means the
#: lungs are misaligned by more than the gate the matching allows.
POOR_DICE = 0.80
#: Lung-mask Dice below which the scans do not overlap: a different body region, or a failed registration.
NO_OVERLAP_DICE = 0.30
METHOD = ("lung-mask rigid then affine (mean squares of smoothed masks), refined on the lung-windowed CT "
          "(correlation), per lung where it helps; 3 mm grid")
LUNGS = {"right": labels.LUNG_RIGHT.value, "left": labels.LUNG_LEFT.value}


@dataclass(frozen=True)
class RegistrationConfig:
    """How the registration runs.

    Attributes:
        spacing_mm: isotropic working spacing.
        mask_sigma_mm: Gaussian smoothing of the lung masks.
        window_hu: HU range the CT is clipped to for the intensity refinement.
        metric_margin_mm: the intensity metric samples the current lungs dilated by this.
        sampling: fraction of the voxels each metric evaluation samples.
        iterations: optimiser iterations per level.
        per_lung_below_dice: a lung whose Dice is below this after the whole-chest registration gets its own.
        per_lung_min_gain: Dice gain a lung's own transform needs to be used.
        seed: the sampler's seed (results are reproducible).
    """

    spacing_mm: float = 3.0
    mask_sigma_mm: float = 4.0
    window_hu: tuple[float, float] = (-1000.0, -300.0)
    metric_margin_mm: float = 6.0
    sampling: float = 0.25
    iterations: int = 100
    per_lung_below_dice: float = 0.95
    per_lung_min_gain: float = 0.005
    seed: int = 7


@dataclass
class Registration:
    """A finished registration.

    Attributes:
        transform: whole-chest affine, current point -> prior point.
        per_lung: the lungs (``right``, ``left``) that got their own transform, current -> prior.
        dice: lung-mask Dice after registration: ``overall``, ``left``, ``right``.
        quality: ``good`` or ``poor``.
        method: how it was done, in words.
        seconds: how long it took.
    """

    transform: sitk.AffineTransform
    per_lung: dict[str, sitk.AffineTransform] = field(default_factory=dict)
    dice: dict[str, float] = field(default_factory=dict)
    quality: str = "good"
    method: str = METHOD
    seconds: float = 0.0

    def transform_for(self, lung: str | None = None) -> sitk.AffineTransform:
        """``lung``'s own transform (current -> prior) when it has one, else the whole-chest one."""
        return self.per_lung.get(lung or "", self.transform)

    def to_prior(self, point_lps: np.ndarray, lung: str | None = None) -> np.ndarray:
        """A current-scan point mapped into the prior (LPS mm), with ``lung``'s own transform when it has one."""
        transform = self.transform_for(lung)
        return np.asarray(transform.TransformPoint([float(v) for v in point_lps]))

    def to_current(self, point_lps: np.ndarray, lung: str | None = None) -> np.ndarray:
        """A prior-scan point mapped into the current scan (LPS mm), the inverse of :meth:`to_prior`."""
        transform = self.transform_for(lung)
        return np.asarray(transform.GetInverse().TransformPoint([float(v) for v in point_lps]))


def _working_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty image covering ``image``'s extent at ``spacing_mm`` isotropic voxels (same origin and direction)."""
    size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    grid.SetSpacing([spacing_mm] * 3)
    return grid


def _resampled(image: sitk.Image, grid: sitk.Image, interpolator: int, default: float = 0.0,
               transform: sitk.Transform | None = None) -> sitk.Image:
    return sitk.Resample(image, grid, transform or sitk.Transform(), interpolator, default, image.GetPixelID())


def _shrunk(image: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """``image`` (float) averaged over blocks of about the working spacing (anti-aliasing), on ``grid``."""
    factors = [max(1, int(round(g / s))) for g, s in zip(grid.GetSpacing(), image.GetSpacing())]
    return _resampled(sitk.BinShrink(image, factors), grid, sitk.sitkLinear)


def _mask_image(lung_labels: sitk.Image, grid: sitk.Image, sigma_mm: float) -> sitk.Image:
    lungs = _shrunk(sitk.Cast(lung_labels > 0, sitk.sitkFloat32), grid)
    return sitk.SmoothingRecursiveGaussian(lungs, sigma_mm)


def _windowed(image: sitk.Image, grid: sitk.Image, window: tuple[float, float]) -> sitk.Image:
    return _shrunk(sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, window[0], window[1]), grid)


def _method(cfg: RegistrationConfig, metric: str, fixed_mask: sitk.Image | None = None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    if metric == "mean squares":
        method.SetMetricAsMeanSquares()
    else:
        method.SetMetricAsCorrelation()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(cfg.sampling, cfg.seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01,
                                                    numberOfIterations=cfg.iterations,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2, 0])
    return method


def _affine_from(transform: sitk.Transform) -> sitk.AffineTransform:
    """``transform`` (Euler or affine) as an affine transform with the same centre."""
    if isinstance(transform, sitk.Euler3DTransform):
        affine = sitk.AffineTransform(3)
        affine.SetMatrix(transform.GetMatrix())
        affine.SetTranslation(transform.GetTranslation())
        affine.SetCenter(transform.GetCenter())
        return affine
    return sitk.AffineTransform(transform)


def _optimised(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
               start: sitk.Transform) -> sitk.Transform:
    method.SetInitialTransform(start, inPlace=False)
    result = method.Execute(fixed, moving)
    if isinstance(result, sitk.CompositeTransform):
        result = result.GetBackTransform()
    return result.Downcast()


def _dice(current: np.ndarray, mapped: np.ndarray, value: int | None) -> float:
    a = current > 0 if value is None else current == value
    b = mapped > 0 if value is None else mapped == value
    total = int(a.sum() + b.sum())
    return round(2.0 * float(np.count_nonzero(a & b)) / total, 4) if total else 0.0


def _label_dice(current_labels: np.ndarray, prior_labels: sitk.Image, grid: sitk.Image,
                transform: sitk.Transform) -> dict[str, float]:
    mapped = sitk.GetArrayFromImage(_resampled(prior_labels, grid, sitk.sitkNearestNeighbor, 0, transform))
    dice = {"overall": _dice(current_labels, mapped, None)}
    dice.update({name: _dice(current_labels, mapped, value) for name, value in LUNGS.items()})
    return dice


def _lung_metric_mask(grid_labels: sitk.Image, value: int | None, margin_mm: float) -> sitk.Image:
    """The current lungs (or one lung) on the working grid, dilated by ``margin_mm``."""
    lungs = grid_labels > 0 if value is None else grid_labels == value
    distance = sitk.SignedMaurerDistanceMap(lungs, insideIsPositive=False, useImageSpacing=True)
    return sitk.Cast(distance <= margin_mm, sitk.sitkUInt8)


def register(current: sitk.Image, current_lungs: sitk.Image, prior: sitk.Image, prior_lungs: sitk.Image,
             config: RegistrationConfig | None = None) -> Registration:
    """Register the prior scan to the current one (see the module docstring).

    Args:
        current: the current CT (HU, LPS).
        current_lungs: its lung labels (right and left lung values of :mod:`lungai.labels`).
        prior: the prior CT.
        prior_lungs: its lung labels.
        config: settings.

    Returns:
        The transforms and the lung-mask Dice.

    Raises:
        RegistrationError: the lungs do not overlap after registration.
    """
    cfg = config or RegistrationConfig()
    start = time.perf_counter()
    grid, prior_grid = _working_grid(current, cfg.spacing_mm), _working_grid(prior, cfg.spacing_mm)
    fixed_mask, moving_mask = (_mask_image(current_lungs, grid, cfg.mask_sigma_mm),
                               _mask_image(prior_lungs, prior_grid, cfg.mask_sigma_mm))
    initial = sitk.CenteredTransformInitializer(fixed_mask, moving_mask, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid = _optimised(_method(cfg, "mean squares"), fixed_mask, moving_mask, initial)
    affine = _optimised(_method(cfg, "mean squares"), fixed_mask, moving_mask, _affine_from(rigid))
    fixed_ct, moving_ct = _windowed(current, grid, cfg.window_hu), _windowed(prior, prior_grid, cfg.window_hu)
    grid_labels = _resampled(current_lungs, grid, sitk.sitkNearestNeighbor)
    chest = _optimised(_method(cfg, "correlation", _lung_metric_mask(grid_labels, None, cfg.metric_margin_mm)),
                       fixed_ct, moving_ct, _affine_from(affine))
    current_labels = sitk.GetArrayFromImage(grid_labels)
    result = Registration(transform=_affine_from(chest), dice=_label_dice(current_labels, prior_lungs, grid, chest))
    for name, value in LUNGS.items():
        if result.dice[name] >= cfg.per_lung_below_dice:
            continue
        mask = _lung_metric_mask(grid_labels, value, cfg.metric_margin_mm)
        own = _affine_from(_optimised(_method(cfg, "correlation", mask), fixed_ct, moving_ct,
                                      _affine_from(result.transform)))
        gain = _label_dice(current_labels, prior_lungs, grid, own)[name] - result.dice[name]
        if gain >= cfg.per_lung_min_gain:
            result.per_lung[name] = own
            result.dice[name] = round(result.dice[name] + gain, 4)
            logger.info("registration: the %s lung gets its own transform (Dice +%.3f)", name, gain)
    result.seconds = round(time.perf_counter() - start, 2)
    _judge(result)
    logger.info("registration: lung Dice %.3f (right %.3f, left %.3f), %s, %.1f s", result.dice["overall"],
                result.dice["right"], result.dice["left"], result.quality, result.seconds)
    return result


def _judge(result: Registration) -> None:
    """Set the quality; refuse a registration whose lungs do not overlap."""
    overall = result.dice["overall"]
    if overall < NO_OVERLAP_DICE:
        raise RegistrationError(f"the lungs of the two scans do not overlap after registration (lung-mask Dice "
                                f"{overall:.2f})", "check that both scans are chest CTs of the same patient")
    result.quality = "good" if min(result.dice.values()) >= POOR_DICE else "poor"


def resample_prior(prior: sitk.Image, current: sitk.Image, registration: Registration) -> sitk.Image:
    """The prior CT on the current scan's grid (linear interpolation, air outside), int16 HU."""
    moved = sitk.Resample(prior, current, registration.transform, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(moved), sitk.sitkInt16)
