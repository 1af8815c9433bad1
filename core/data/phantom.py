"""A synthetic chest CT phantom with known lungs and nodules.

``lungai demo`` runs the pipeline on it, and fast tests use it where a real scan would be too
slow. The anatomy is drawn in millimetres around the volume centre, so it keeps its physical
size whatever grid :class:`PhantomConfig` asks for (a grid smaller than about 290 x 290 x
250 mm cuts it off):

- body: an elliptic cylinder of soft tissue (40 HU) under a 10 mm fat layer (-100 HU), a
  vertebral column (350 HU) and nine ribs (700 HU) slanting around the chest wall;
- lungs: two ellipsoids of parenchyma (-850 HU), about 1.2 L each, each with a seeded
  pulmonary artery tree (40 HU, non-contrast blood) that reaches the whole lung. The
  artery's 14 mm trunk runs in the mediastinum to the hilum, which lies just medial to the
  lung's medial surface, so only its end indents the lung; there it divides into two lobar
  branches that enter the lung. From them to the tips the tree has seven generations of
  Y-shaped bifurcations (a daughter turns at most 70 degrees from its parent). Each segment
  tapers by 5 % along its length and its daughters' radii follow Murray's law (r^3 of the
  parent = the sum of the daughters' r^3), from 5.3 mm in the lobar branches to 0.9 mm at
  the tips; the vessels have a partial-volume edge;
- parenchymal texture: smooth random variation of the lung tissue (about 12 HU, 2 mm grain),
  on top of the scanner noise below;
- airways: a trachea (air, -1000 HU) from the top of the volume to a carina, where it splits
  into two main bronchi that enter the lungs;
- four nodules of 10-18 mm at real nodules' attenuation (see :data:`NODULES`): a solid one
  touching the chest wall (juxtapleural), a solid one inside the lung, a part-solid one
  (ground glass with a solid core) and a ground-glass one. Each has a soft edge (a logistic
  profile, wider for ground glass) and a mildly lobulated outline, and vessels running
  through a ground-glass part stay visible, as in real subsolid nodules. The outlines do not
  depend on the seed, so the truth is the same for every phantom;
- outside air (-1000 HU), a slight blur and seeded Gaussian noise.

Not modelled: fissures, the denser dependent (posterior) lung, heart and great vessels (the
arteries' trunks are soft tissue among soft tissue), pulmonary veins (a tree of their own),
bronchi beyond the main bronchi, contrast, beam hardening and streaks. The phantom is a
check that the pipeline runs and that its measurements are right where it finds a nodule;
it is not evidence of detection performance on real scans.

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
GROUND_GLASS_HU = -570.0
PARENCHYMA_TEXTURE_SD_HU = 12.0

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
_HILUM_Y_Z = (8.0, 0.0)  # the hila's height and depth (mm): below the carina, mid-chest
_HILUM_DEPTH_MM = 2.0  # each hilum lies this far medial to its lung's medial surface
_PULMONARY_BIFURCATION = (0.0, 4.0, 4.0)  # the pulmonary trunk divides here, in the mediastinum
_VESSEL_GENERATIONS = 7
_VESSEL_TRUNK_RADIUS_MM = 7.0  # right and left pulmonary arteries, 14 mm across, mediastinal
_VESSEL_TAPER = 0.95  # a segment's radius at its end over its radius at its start
_VESSEL_BRANCH_RATIO = 2.0 ** (-1.0 / 3.0)  # Murray's law for two equal daughter branches
_VESSEL_MAX_BRANCH_ANGLE_DEG = 70.0  # a daughter turns at most this far from its parent
_VESSEL_EDGE_MM = 0.5  # width of the partial-volume ramp across a vessel's wall
_TEXTURE_GRAIN_MM = 2.0  # Gaussian correlation length of the parenchymal texture
_SOLID_EDGE_MM = 0.4  # logistic scale of a solid edge: 10-90 % over about 1.8 mm, before the blur
_GLASS_EDGE_MM = 1.0  # ground glass fades out over about 4.4 mm
_LOBULATION = 0.08  # the outline's radius varies by up to this fraction with direction
_LOBES = 3


@dataclass(frozen=True)
class PhantomNodule:
    """A nodule of the phantom and its ground truth.

    Attributes:
        centre_lps_mm: centre in LPS world coordinates (mm).
        diameter_mm: nominal diameter of the whole nodule: its outline's radius is
            ``diameter_mm / 2`` times ``1 +/- 0.08`` depending on direction (lobulation), and
            half of the soft edge lies outside it.
        type: ``solid``, ``part-solid`` or ``ground-glass``.
        solid_diameter_mm: diameter of the solid part (0 for ground-glass; a sphere, no lobes).
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
    # 14 mm solid nodule deep in the left lower lung, posterior.
    PhantomNodule((50.0, 30.0, -50.0), 14.0, "solid", 14.0, labels.nodule(2).value),
    # 18 mm part-solid nodule in the left lung, anterior: ground glass around an 8 mm solid core.
    PhantomNodule((62.0, -15.0, 20.0), 18.0, "part-solid", 8.0, labels.nodule(3).value),
    # 12 mm pure ground-glass nodule in the right upper lung, posterior.
    PhantomNodule((-60.0, 25.0, 40.0), 12.0, "ground-glass", 0.0, labels.nodule(4).value),
)
"""The phantom's nodules. Centres are exact; ``diameter_mm`` is nominal (see
:class:`PhantomNodule`); :attr:`Phantom.nodule_labels` holds each one's voxels inside the lungs."""


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
        _draw_vessel_tree(hu, grid, lung, centre, semi_axes, rng)
    _draw_airways(hu, grid)
    nodule_labels = _draw_nodules(hu, grid, lung_labels > 0)
    _add_texture(hu, grid, lung_labels > 0, rng)

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
    return _segment_projection(grid, start, end, box)[0]


def _segment_projection(grid: _Coordinates, start: np.ndarray, end: np.ndarray,
                        box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from the voxels of ``box`` to the segment, and where along it (0 to 1) they lie."""
    x, y, z = grid.x[..., box[2]], grid.y[:, box[1], :], grid.z[box[0]]
    axis = end - start
    length2 = max(float(axis @ axis), 1e-9)
    t = np.clip(((x - start[0]) * axis[0] + (y - start[1]) * axis[1]
                 + (z - start[2]) * axis[2]) / length2, 0.0, 1.0)
    distance = np.sqrt((x - start[0] - t * axis[0]) ** 2 + (y - start[1] - t * axis[1]) ** 2
                       + (z - start[2] - t * axis[2]) ** 2)
    return distance, t


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


def _draw_vessel_tree(hu: np.ndarray, grid: _Coordinates, lung: np.ndarray,
                      centre: tuple[float, float, float], semi_axes: tuple[float, float, float],
                      rng: np.random.Generator) -> None:
    """A pulmonary artery from the mediastinum and its space-filling tree through the lung.

    The artery's trunk runs in the mediastinum from :data:`_PULMONARY_BIFURCATION` to the
    hilum, just medial to the lung (only its end touches the lung's medial surface), and
    divides there into two lobar branches that enter the lung. ``2 ** _VESSEL_GENERATIONS``
    random points stand for the lung's territories. Each branch feeds a set of them: it splits
    the set in two halves across its widest direction, and each daughter runs from the
    branch's end towards the centre of its half (60 % of the way, all of it in the last
    generation, which ends at or near the points themselves), turning at most
    ``_VESSEL_MAX_BRANCH_ANGLE_DEG`` from its parent, so bifurcations are Y-shaped and no
    daughter doubles back along its parent. Every segment tapers by ``_VESSEL_TAPER`` along
    its length and its daughters start at Murray's radius for its end, so the radius falls
    smoothly from 5.3 mm in the lobar branches to 0.9 mm at the tips.
    """
    hilum = _hilum(centre, semi_axes)
    trunk_start = np.array(_PULMONARY_BIFURCATION)
    trunk_end_radius = _VESSEL_TRUNK_RADIUS_MM * _VESSEL_TAPER
    _draw_vessel(hu, grid, trunk_start, hilum, _VESSEL_TRUNK_RADIUS_MM, trunk_end_radius, lung)
    points = np.array([_random_point_in_ellipsoid(centre, semi_axes, rng, 0.9)
                       for _ in range(2 ** _VESSEL_GENERATIONS)])
    branches = [(hilum, hilum - trunk_start, trunk_end_radius * _VESSEL_BRANCH_RATIO, points)]
    for generation in range(_VESSEL_GENERATIONS):
        reach = 1.0 if generation == _VESSEL_GENERATIONS - 1 else 0.6
        next_branches = []
        for start, heading, radius, territory in branches:
            for half in _halves(territory):
                end = _within_branch_angle(start, start + reach * (half.mean(axis=0) - start), heading)
                end_radius = radius * _VESSEL_TAPER
                _draw_vessel(hu, grid, start, end, radius, end_radius, lung)
                next_branches.append((end, end - start, end_radius * _VESSEL_BRANCH_RATIO, half))
        branches = next_branches
    logger.debug("vessel tree from hilum %s, lobar radius %.2f mm", np.round(hilum, 1),
                 trunk_end_radius * _VESSEL_BRANCH_RATIO)


def _hilum(centre: tuple[float, float, float], semi_axes: tuple[float, float, float]) -> np.ndarray:
    """The lung's hilum: ``_HILUM_DEPTH_MM`` medial to its medial surface at ``_HILUM_Y_Z``."""
    y, z = _HILUM_Y_Z
    across = semi_axes[0] * np.sqrt(1.0 - ((y - centre[1]) / semi_axes[1]) ** 2
                                    - ((z - centre[2]) / semi_axes[2]) ** 2)
    medial = -np.sign(centre[0])  # towards the midline
    return np.array([centre[0] + medial * (across + _HILUM_DEPTH_MM), y, z])


def _within_branch_angle(start: np.ndarray, end: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """``end``, turned about ``start`` towards ``heading`` if it lies beyond the largest branch angle."""
    offset = end - start
    length = float(np.linalg.norm(offset))
    forward = heading / max(float(np.linalg.norm(heading)), 1e-9)
    if length < 1e-9:
        return end
    limit = np.deg2rad(_VESSEL_MAX_BRANCH_ANGLE_DEG)
    if float(offset @ forward) >= length * np.cos(limit):
        return end
    sideways = offset - float(offset @ forward) * forward
    if float(np.linalg.norm(sideways)) < 1e-9:  # straight back: turn any way
        sideways = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0.0, 1.0, 0.0])
    sideways /= float(np.linalg.norm(sideways))
    return start + length * (np.cos(limit) * forward + np.sin(limit) * sideways)


def _halves(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split points in two equal halves across their direction of largest spread."""
    centred = points - points.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort(centred @ direction)
    middle = len(points) // 2
    return points[order[:middle]], points[order[middle:]]


def _draw_vessel(hu: np.ndarray, grid: _Coordinates, start: np.ndarray, end: np.ndarray,
                 radius: float, end_radius: float, lung: np.ndarray) -> None:
    """A vessel segment in the lung, tapering linearly from ``radius`` to ``end_radius``.

    Its wall is a linear partial-volume ramp of ``_VESSEL_EDGE_MM``; only lung voxels take it.
    """
    box = _box(grid, start, end, max(radius, end_radius) + _VESSEL_EDGE_MM)
    distance, position = _segment_projection(grid, start, end, box)
    local_radius = radius + position * (end_radius - radius)
    fraction = np.clip((local_radius - distance) / _VESSEL_EDGE_MM + 0.5, 0.0, 1.0) * lung[box]
    region = hu[box]
    region += (fraction * (VESSEL_HU - region)).astype(region.dtype)


def _random_point_in_ellipsoid(centre: tuple[float, float, float],
                               semi_axes: tuple[float, float, float],
                               rng: np.random.Generator, inner: float = 0.8) -> np.ndarray:
    """A uniform random point in the inner fraction ``inner`` of an ellipsoid."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    scale = inner * rng.uniform() ** (1.0 / 3.0)
    return np.array(centre) + scale * direction * np.array(semi_axes)


def _draw_airways(hu: np.ndarray, grid: _Coordinates) -> None:
    """Trachea from the top of the volume to the carina, main bronchi into the lungs."""
    carina = np.array(_CARINA)
    top = np.array([carina[0], carina[1], float(grid.z.max()) + 10.0])
    _draw_tube(hu, grid, top, carina, _TRACHEA_RADIUS_MM, AIR_HU)
    for end in _BRONCHUS_ENDS.values():
        _draw_tube(hu, grid, carina, np.array(end), _BRONCHUS_RADIUS_MM, AIR_HU)


def _draw_nodules(hu: np.ndarray, grid: _Coordinates, lungs: np.ndarray) -> np.ndarray:
    """Paint the nodules into the lungs (soft edges, lobulated outlines); return their labels.

    A nodule raises the HU of the lung voxels it covers towards its own value and never lowers
    them, so vessels running through ground glass stay visible and the chest wall stays wall.
    Its label holds the lung voxels inside its outline (where its edge profile reaches half).
    """
    nodule_labels = np.zeros(hu.shape, dtype=np.uint8)
    for nodule in NODULES:
        centre = np.array(nodule.centre_lps_mm)
        glassy = nodule.type != "solid"
        edge = _GLASS_EDGE_MM if glassy else _SOLID_EDGE_MM
        box = _box(grid, centre, centre, nodule.diameter_mm / 2.0 * (1.0 + _LOBULATION) + 5.0 * edge)
        offsets = (grid.x[..., box[2]] - centre[0], grid.y[:, box[1], :] - centre[1],
                   grid.z[box[0]] - centre[2])
        distance = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2 + offsets[2] ** 2)
        outline = nodule.diameter_mm / 2.0 * _lobulation(offsets, distance, nodule.label)
        inside_lung = lungs[box]
        region = hu[box]
        value = {"solid": SOLID_HU, "part-solid": PART_SOLID_GLASS_HU}.get(nodule.type, GROUND_GLASS_HU)
        _raise_towards(region, value, _logistic((outline - distance) / edge), inside_lung)
        if nodule.type == "part-solid":
            core = _logistic((nodule.solid_diameter_mm / 2.0 - distance) / _SOLID_EDGE_MM)
            _raise_towards(region, SOLID_HU, core, inside_lung)
        nodule_labels[box][(distance <= outline) & inside_lung] = nodule.label
    return nodule_labels


def _logistic(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _raise_towards(region: np.ndarray, value: float, fraction: np.ndarray, where: np.ndarray) -> None:
    """Blend ``region`` towards ``value`` by ``fraction`` where that raises it (in place)."""
    blended = region + fraction * (value - region)
    np.copyto(region, np.maximum(region, blended).astype(region.dtype), where=where)


def _lobulation(offsets: tuple[np.ndarray, np.ndarray, np.ndarray], distance: np.ndarray,
                seed: int) -> np.ndarray:
    """Radius factor ``1 + _LOBULATION * g(direction)``, ``|g| <= 1`` with zero mean over the sphere.

    ``g`` averages Legendre polynomials of degree 2, 3 and 4 of the cosine between the direction
    and ``_LOBES`` fixed random axes: a few smooth lobes, the same for a nodule whatever the grid.
    """
    axes = np.random.default_rng(seed).normal(size=(_LOBES, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    safe = np.maximum(distance, 1e-6)
    legendre = (lambda t: (3 * t ** 2 - 1) / 2, lambda t: (5 * t ** 3 - 3 * t) / 2,
                lambda t: (35 * t ** 4 - 30 * t ** 2 + 3) / 8)
    shape = np.zeros(distance.shape)
    for axis, polynomial in zip(axes, legendre):
        cosine = (offsets[0] * axis[0] + offsets[1] * axis[1] + offsets[2] * axis[2]) / safe
        shape += polynomial(cosine)
    return 1.0 + _LOBULATION * shape / _LOBES


def _add_texture(hu: np.ndarray, grid: _Coordinates, lungs: np.ndarray, rng: np.random.Generator) -> None:
    """Smooth random variation of the lung tissue, ``PARENCHYMA_TEXTURE_SD_HU`` in the lungs (in place)."""
    field = ndimage.gaussian_filter(rng.normal(size=hu.shape).astype(np.float32),
                                    _TEXTURE_GRAIN_MM / grid.spacing[::-1])
    field *= PARENCHYMA_TEXTURE_SD_HU / max(float(field[lungs].std()), 1e-6)
    hu[lungs] += field[lungs]
