"""A synthetic chest CT phantom with known lungs and nodules.

``lungai demo`` runs the pipeline on it, and fast tests use it where a real scan would be too
slow. The anatomy is drawn in millimetres around the volume centre, so it keeps its physical
size whatever grid :class:`PhantomConfig` asks for (a grid smaller than about 290 x 290 x
250 mm cuts it off):

- body: an elliptic cylinder of soft tissue (40 HU) under a 10 mm fat layer (-100 HU), a
  vertebral column (350 HU) and nine ribs (700 HU) slanting around the chest wall;
- lungs: two ellipsoids of parenchyma (-850 HU), about 1.2 L each, with a seeded tree of
  branching vessels (40 HU) from each hilum;
- airways: a trachea (air, -1000 HU) from the top of the volume to a carina, where it splits
  into two main bronchi that enter the lungs;
- three nodules: a solid one touching the chest wall (juxtapleural), a part-solid one and a
  ground-glass one (see :data:`NODULES`);
- outside air (-1000 HU), a slight blur and seeded Gaussian noise.

The image is int16 HU in LPS with identity direction; the same seed gives the same phantom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai import labels

logger = logging.getLogger(__name__)

AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_TISSUE_HU = 40.0
BONE_HU = 350.0
RIB_HU = 700.0
LUNG_HU = -850.0
VESSEL_HU = 40.0
SOLID_HU = 30.0
PART_SOLID_GLASS_HU = -550.0
GROUND_GLASS_HU = -600.0

_BODY_CENTRE_Y = 5.0
_BODY_SEMI_AXES = (130.0, 100.0)
_FAT_MM = 10.0
_RIB_RING_SEMI_AXES = (112.0, 82.0)
_RIB_RADIUS_MM = 4.0
_LUNG_CENTRE_Z = -5.0
_LUNGS = {  # label value -> (centre x, y, z), semi-axes (x, y, z); LPS: right lung has x < 0
    labels.LUNG_RIGHT.value: ((-58.0, _BODY_CENTRE_Y, _LUNG_CENTRE_Z), (46.0, 68.0, 95.0)),
    labels.LUNG_LEFT.value: ((58.0, _BODY_CENTRE_Y, _LUNG_CENTRE_Z), (44.0, 68.0, 95.0)),
}
_CARINA = (0.0, -5.0, 30.0)
_TRACHEA_RADIUS_MM = 8.0
_BRONCHUS_RADIUS_MM = 5.5
_BRONCHUS_ENDS = {labels.LUNG_RIGHT.value: (-32.0, 5.0, 5.0),
                  labels.LUNG_LEFT.value: (32.0, 5.0, 5.0)}
_HILA = {labels.LUNG_RIGHT.value: (-24.0, 8.0, 0.0), labels.LUNG_LEFT.value: (24.0, 8.0, 0.0)}
_VESSEL_GENERATIONS = 4
_VESSEL_ROOT_RADIUS_MM = 3.5


@dataclass(frozen=True)
class PhantomNodule:
    """A nodule of the phantom and its ground truth.

    Attributes:
        centre_lps_mm: centre in LPS world coordinates (mm).
        diameter_mm: diameter of the whole nodule.
        type: ``solid``, ``part-solid`` or ``ground-glass``.
        solid_diameter_mm: diameter of the solid part (0 for ground-glass).
        label: value of this nodule in :attr:`Phantom.nodule_labels`.
    """

    centre_lps_mm: tuple[float, float, float]
    diameter_mm: float
    type: str
    solid_diameter_mm: float
    label: int


NODULES: tuple[PhantomNodule, ...] = (
    # 10 mm solid nodule against the lateral chest wall of the right lung (juxtapleural):
    # its centre lies 3 mm inside the lung surface, so its base touches the wall.
    PhantomNodule((-100.4, _BODY_CENTRE_Y, -20.0), 10.0, "solid", 10.0, labels.nodule(1).value),
    PhantomNodule((62.0, -15.0, 20.0), 14.0, "part-solid", 6.0, labels.nodule(2).value),
    PhantomNodule((-60.0, 25.0, 40.0), 12.0, "ground-glass", 0.0, labels.nodule(3).value),
)
"""The phantom's nodules; ``diameter_mm`` and centres are exact, the voxels are the sphere."""


@dataclass(frozen=True)
class PhantomConfig:
    """Grid and randomness of the phantom.

    Attributes:
        size: voxels along x, y, z.
        spacing_mm: voxel spacing along x, y, z.
        noise_sd_hu: standard deviation of the Gaussian noise.
        blur_mm: standard deviation of the Gaussian blur applied before the noise.
        seed: seeds the vessel tree and the noise.
    """

    size: tuple[int, int, int] = (192, 192, 100)
    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 2.5)
    noise_sd_hu: float = 20.0
    blur_mm: float = 0.8
    seed: int = 0


@dataclass
class Phantom:
    """A synthetic chest CT and its ground truth.

    Attributes:
        image: int16 HU image, LPS, identity direction, volume centre at (0, 0, 0) mm.
        lung_labels: uint8 image on the same grid: ``labels.LUNG_RIGHT.value`` and
            ``labels.LUNG_LEFT.value`` (the lung ellipsoids, vessels, bronchi and nodules in them).
        nodule_labels: uint8 image, each nodule's voxels (inside the lungs) at its ``label``.
        nodules: the nodules' ground truth.
        config: the configuration that made it.
    """

    image: sitk.Image
    lung_labels: sitk.Image
    nodule_labels: sitk.Image
    nodules: list[PhantomNodule] = field(default_factory=list)
    config: PhantomConfig = field(default_factory=PhantomConfig)


class _Coordinates:
    """LPS coordinates (mm) of the voxel centres, as broadcastable (z, y, x) arrays."""

    def __init__(self, config: PhantomConfig) -> None:
        size = np.array(config.size)
        spacing = np.array(config.spacing_mm)
        self.spacing = spacing
        self.origin = -(size - 1) * spacing / 2.0
        axes = [self.origin[i] + spacing[i] * np.arange(size[i]) for i in range(3)]
        self.x = axes[0][None, None, :]
        self.y = axes[1][None, :, None]
        self.z = axes[2][:, None, None]
        self.shape = (int(size[2]), int(size[1]), int(size[0]))


def make_phantom(config: PhantomConfig | None = None) -> Phantom:
    """Build the synthetic chest CT.

    Args:
        config: grid, noise and seed; the defaults give 192 x 192 x 100 voxels of
            1.5 x 1.5 x 2.5 mm.

    Returns:
        The phantom image with its lung labels, nodule labels and nodule list.
    """
    cfg = config or PhantomConfig()
    rng = np.random.default_rng(cfg.seed)
    grid = _Coordinates(cfg)
    hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
    _draw_body(hu, grid)
    lung_labels = np.zeros(grid.shape, dtype=np.uint8)
    for value, (centre, semi_axes) in _LUNGS.items():
        lung = _ellipsoid(grid, centre, semi_axes)
        lung_labels[lung] = value
        hu[lung] = LUNG_HU
        _draw_vessel_tree(hu, grid, lung, np.array(_HILA[value]), centre, semi_axes, rng)
    _draw_airways(hu, grid)
    nodule_labels = _draw_nodules(hu, grid, lung_labels > 0)

    sigma = cfg.blur_mm / grid.spacing[::-1]
    hu = ndimage.gaussian_filter(hu, sigma)
    hu += rng.normal(0.0, cfg.noise_sd_hu, size=hu.shape).astype(np.float32)
    image = _to_image(np.clip(np.round(hu), -1024, 3071).astype(np.int16), grid)
    logger.debug("phantom %s voxels, seed %d", cfg.size, cfg.seed)
    return Phantom(image=image, lung_labels=_to_image(lung_labels, grid),
                   nodule_labels=_to_image(nodule_labels, grid), nodules=list(NODULES),
                   config=cfg)


def _to_image(array: np.ndarray, grid: _Coordinates) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(float(v) for v in grid.origin))
    image.SetSpacing(tuple(float(v) for v in grid.spacing))
    return image


def _ellipsoid(grid: _Coordinates, centre: tuple[float, float, float],
               semi_axes: tuple[float, float, float]) -> np.ndarray:
    return (((grid.x - centre[0]) / semi_axes[0]) ** 2 + ((grid.y - centre[1]) / semi_axes[1]) ** 2
            + ((grid.z - centre[2]) / semi_axes[2]) ** 2) <= 1.0


def _draw_body(hu: np.ndarray, grid: _Coordinates) -> None:
    """Fat layer, soft tissue, vertebral column and ribs (in place)."""
    a, b = _BODY_SEMI_AXES
    dy = grid.y - _BODY_CENTRE_Y
    outer = (grid.x / a) ** 2 + (dy / b) ** 2 <= 1.0
    inner = (grid.x / (a - _FAT_MM)) ** 2 + (dy / (b - _FAT_MM)) ** 2 <= 1.0
    hu[np.broadcast_to(outer, hu.shape)] = FAT_HU
    hu[np.broadcast_to(inner, hu.shape)] = SOFT_TISSUE_HU
    spine = grid.x ** 2 + (grid.y - 75.0) ** 2 <= 15.0 ** 2
    hu[np.broadcast_to(spine, hu.shape)] = BONE_HU

    ra, rb = _RIB_RING_SEMI_AXES
    rho = np.sqrt((grid.x / ra) ** 2 + (dy / rb) ** 2)
    radial_mm = (rho - 1.0) * np.sqrt(ra * rb)
    slope = np.clip(dy / rb, -1.0, 1.0) * 12.0  # ribs rise towards the back
    beside_sternum = (dy < 0) & (np.abs(grid.x) < 25.0)
    for z0 in np.arange(-88.0, 89.0, 22.0):
        rib = radial_mm ** 2 + (grid.z - z0 - slope) ** 2 <= _RIB_RADIUS_MM ** 2
        hu[rib & ~beside_sternum] = RIB_HU


def _segment_distance(grid: _Coordinates, start: np.ndarray, end: np.ndarray,
                      box: tuple[slice, slice, slice]) -> np.ndarray:
    """Distance (mm) from the voxels of ``box`` to the segment ``start``-``end``."""
    x, y, z = grid.x[..., box[2]], grid.y[:, box[1], :], grid.z[box[0]]
    axis = end - start
    length2 = max(float(axis @ axis), 1e-9)
    t = np.clip(((x - start[0]) * axis[0] + (y - start[1]) * axis[1]
                 + (z - start[2]) * axis[2]) / length2, 0.0, 1.0)
    return np.sqrt((x - start[0] - t * axis[0]) ** 2 + (y - start[1] - t * axis[1]) ** 2
                   + (z - start[2] - t * axis[2]) ** 2)


def _box(grid: _Coordinates, start: np.ndarray, end: np.ndarray,
         margin: float) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of the voxels within ``margin`` mm of the segment's bounding box."""
    low = (np.minimum(start, end) - margin - grid.origin) / grid.spacing
    high = (np.maximum(start, end) + margin - grid.origin) / grid.spacing
    size = grid.shape[::-1]
    bounds = [slice(max(0, int(np.floor(lo))), min(n, int(np.ceil(hi)) + 1))
              for lo, hi, n in zip(low, high, size)]
    return bounds[2], bounds[1], bounds[0]


def _draw_tube(hu: np.ndarray, grid: _Coordinates, start: np.ndarray, end: np.ndarray,
               radius: float, value: float, within: np.ndarray | None = None) -> None:
    box = _box(grid, start, end, radius)
    inside = _segment_distance(grid, start, end, box) <= radius
    if within is not None:
        inside &= within[box]
    hu[box][inside] = value


def _draw_vessel_tree(hu: np.ndarray, grid: _Coordinates, lung: np.ndarray, hilum: np.ndarray,
                      centre: tuple[float, float, float], semi_axes: tuple[float, float, float],
                      rng: np.random.Generator) -> None:
    """Branching vessels from the hilum: every segment ends halfway to a random lung point."""
    tips = [(hilum, _VESSEL_ROOT_RADIUS_MM)]
    for _ in range(_VESSEL_GENERATIONS):
        next_tips = []
        for start, radius in tips:
            for _ in range(2):
                target = _random_point_in_ellipsoid(centre, semi_axes, rng)
                end = start + 0.5 * (target - start)
                _draw_tube(hu, grid, start, end, radius, VESSEL_HU, within=lung)
                next_tips.append((end, radius * 0.7))
        tips = next_tips


def _random_point_in_ellipsoid(centre: tuple[float, float, float],
                               semi_axes: tuple[float, float, float],
                               rng: np.random.Generator) -> np.ndarray:
    """A uniform random point in the inner 80% of an ellipsoid."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    scale = 0.8 * rng.uniform() ** (1.0 / 3.0)
    return np.array(centre) + scale * direction * np.array(semi_axes)


def _draw_airways(hu: np.ndarray, grid: _Coordinates) -> None:
    """Trachea from the top of the volume to the carina, main bronchi into the lungs."""
    carina = np.array(_CARINA)
    top = np.array([carina[0], carina[1], float(grid.z.max()) + 10.0])
    _draw_tube(hu, grid, top, carina, _TRACHEA_RADIUS_MM, AIR_HU)
    for end in _BRONCHUS_ENDS.values():
        _draw_tube(hu, grid, carina, np.array(end), _BRONCHUS_RADIUS_MM, AIR_HU)


def _draw_nodules(hu: np.ndarray, grid: _Coordinates, lungs: np.ndarray) -> np.ndarray:
    """Paint the nodules into the lungs; return their label array."""
    nodule_labels = np.zeros(hu.shape, dtype=np.uint8)
    for nodule in NODULES:
        centre = np.array(nodule.centre_lps_mm)
        distance = _segment_distance(grid, centre, centre, (slice(None),) * 3)
        whole = (distance <= nodule.diameter_mm / 2.0) & lungs
        nodule_labels[whole] = nodule.label
        if nodule.type == "ground-glass":
            hu[whole] = GROUND_GLASS_HU
        elif nodule.type == "part-solid":
            hu[whole] = PART_SOLID_GLASS_HU
            hu[(distance <= nodule.solid_diameter_mm / 2.0) & lungs] = SOLID_HU
        else:
            hu[whole] = SOLID_HU
    return nodule_labels
