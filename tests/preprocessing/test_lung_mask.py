"""Tests of the classical lung mask on the phantom and on real scans."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from shared_data import require

from lungai import labels
from lungai.data.phantom import Phantom, PhantomConfig, make_phantom
from lungai.errors import NoLungsFoundError
from lungai.preprocessing.lung_mask import LungMask, segment_lungs

RIGHT, LEFT = labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _centroid_x_lps(label_image: sitk.Image, value: int) -> float:
    """LPS x (mm) of the centroid of one label."""
    index_zyx = ndimage.center_of_mass(_array(label_image) == value)
    return label_image.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in reversed(index_zyx)])[0]


def _label_at(label_image: sitk.Image, point_lps: tuple[float, float, float]) -> int:
    return int(label_image[label_image.TransformPhysicalPointToIndex(point_lps)])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# --- phantom -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom()


@pytest.fixture(scope="module")
def phantom_mask(phantom: Phantom) -> LungMask:
    return segment_lungs(phantom.image)


def test_phantom_lungs_on_correct_sides(phantom_mask: LungMask) -> None:
    values = set(np.unique(_array(phantom_mask.labels)))
    assert values == {0, RIGHT, LEFT}
    assert phantom_mask.labels.GetPixelID() == sitk.sitkUInt8
    # LPS: +x points to the patient's left, so the right lung has the smaller x.
    assert _centroid_x_lps(phantom_mask.labels, RIGHT) < 0 < _centroid_x_lps(phantom_mask.labels,
                                                                              LEFT)
    assert phantom_mask.warnings == []


def test_phantom_lung_volumes_match_ground_truth(phantom: Phantom, phantom_mask: LungMask) -> None:
    truth = _array(phantom.lung_labels)
    voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
    for value, measured in ((RIGHT, phantom_mask.right_volume_ml),
                            (LEFT, phantom_mask.left_volume_ml)):
        expected = np.count_nonzero(truth == value) * voxel_ml
        assert measured == pytest.approx(expected, rel=0.1)
        assert _dice(_array(phantom_mask.labels) == value, truth == value) > 0.95
    assert phantom_mask.total_volume_ml == pytest.approx(
        phantom_mask.right_volume_ml + phantom_mask.left_volume_ml)


def test_phantom_nodules_inside_mask(phantom: Phantom, phantom_mask: LungMask) -> None:
    mask = _array(phantom_mask.labels) > 0
    nodules = _array(phantom.nodule_labels)
    for nodule in phantom.nodules:
        assert _label_at(phantom_mask.labels, nodule.centre_lps_mm) > 0, nodule.type
        assert np.mean(mask[nodules == nodule.label]) > 0.75, nodule.type


def test_phantom_juxtapleural_nodule_kept_by_closing(phantom: Phantom,
                                                     phantom_mask: LungMask) -> None:
    solid = next(n for n in phantom.nodules if n.type == "solid")
    x, y, z = solid.centre_lps_mm
    # The chest wall is within a nodule radius of the centre, on the lateral (right, -x) side.
    wall_side = (x - solid.diameter_mm / 2.0, y, z)
    assert _label_at(phantom.lung_labels, wall_side) == 0
    inner_side = (x + solid.diameter_mm / 2.0 - 1.0, y, z)
    assert _label_at(phantom_mask.labels, inner_side) == RIGHT
    assert _label_at(phantom_mask.labels, solid.centre_lps_mm) == RIGHT


def test_phantom_trachea_outside_mask(phantom: Phantom, phantom_mask: LungMask) -> None:
    top_z = phantom.image.TransformIndexToPhysicalPoint((0, 0, phantom.image.GetSize()[2] - 1))[2]
    for z in np.arange(30.0, top_z, 5.0):  # carina at z = 30 mm, trachea on x = 0, y = -5
        assert _label_at(phantom_mask.labels, (0.0, -5.0, float(z))) == 0


def test_non_identity_direction_keeps_sides() -> None:
    """The same anatomy stored with flipped x and y axes gives the same physical lungs."""
    phantom = make_phantom(PhantomConfig(size=(96, 96, 50), spacing_mm=(3.0, 3.0, 5.0)))
    flipped = sitk.GetImageFromArray(_array(phantom.image)[:, ::-1, ::-1].copy())
    flipped.SetSpacing(phantom.image.GetSpacing())
    flipped.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    size = phantom.image.GetSize()
    flipped.SetOrigin(phantom.image.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, 0)))

    mask = segment_lungs(flipped)
    assert mask.labels.GetDirection() == flipped.GetDirection()
    assert _centroid_x_lps(mask.labels, RIGHT) < 0 < _centroid_x_lps(mask.labels, LEFT)
    for nodule in phantom.nodules:
        assert (_label_at(mask.labels, nodule.centre_lps_mm)
                == _label_at(phantom.lung_labels, nodule.centre_lps_mm))


def test_coarse_scan_volumes() -> None:
    phantom = make_phantom(PhantomConfig(size=(64, 64, 50), spacing_mm=(4.5, 4.5, 5.0)))
    mask = segment_lungs(phantom.image)
    voxel_ml = np.prod(phantom.image.GetSpacing()) / 1000.0
    truth = _array(phantom.lung_labels)
    assert mask.right_volume_ml == pytest.approx(np.count_nonzero(truth == RIGHT) * voxel_ml,
                                                 rel=0.1)
    assert mask.left_volume_ml == pytest.approx(np.count_nonzero(truth == LEFT) * voxel_ml,
                                                rel=0.1)


def test_partial_lungs_warn(phantom: Phantom) -> None:
    """A scan that stops halfway up the lungs still gives lungs, with a clear warning."""
    lower_half = phantom.image[:, :, :60]
    mask = segment_lungs(lower_half)
    assert mask.labels.GetSize() == lower_half.GetSize()
    assert mask.right_volume_ml > 300.0 and mask.left_volume_ml > 300.0
    assert any("cut off at the top" in warning for warning in mask.warnings)


def _body_phantom(gas: bool) -> sitk.Image:
    """A soft-tissue cylinder in air, optionally with a large pocket of gas (bowel-like)."""
    z, y, x = np.mgrid[:40, :128, :128]
    hu = np.full(x.shape, -1000, dtype=np.int16)
    hu[(x - 64) ** 2 + (y - 64) ** 2 < 55 ** 2] = 40
    if gas:
        hu[((x - 64) ** 2 + (y - 50) ** 2 < 30 ** 2) & (z > 5) & (z < 35)] = -1000
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 5.0))
    return image


@pytest.mark.parametrize("gas", [False, True])
def test_no_lungs_raises(gas: bool) -> None:
    with pytest.raises(NoLungsFoundError) as error:
        segment_lungs(_body_phantom(gas))
    assert error.value.exit_code == NoLungsFoundError.exit_code
    assert "no lungs found" in error.value.message


def test_input_not_modified(phantom: Phantom) -> None:
    before = _array(phantom.image).copy()
    segment_lungs(phantom.image)
    np.testing.assert_array_equal(_array(phantom.image), before)


# --- real scans --------------------------------------------------------------------------


def _read_dicom_zip(zip_path: Path, folder: Path) -> sitk.Image:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "dicom")))
    return sitk.Cast(reader.Execute(), sitk.sitkInt16)


@pytest.fixture(scope="module")
def lidc_0001(data_root: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[sitk.Image, LungMask]:
    zip_path = require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")
    image = _read_dicom_zip(zip_path, tmp_path_factory.mktemp("lidc_0001"))
    return image, segment_lungs(image)


@pytest.fixture(scope="module")
def lidc_0002(data_root: Path) -> tuple[sitk.Image, LungMask]:
    path = require(data_root / "lidc_scans" / "LIDC-IDRI-0002" / "LIDC-IDRI-0002.nrrd")
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkInt16)
    return image, segment_lungs(image)


LIDC_SCANS = ["lidc_0001", "lidc_0002"]


@pytest.mark.slow
@pytest.mark.parametrize("scan", LIDC_SCANS)
def test_lidc_lung_volumes_and_sides(scan: str, request: pytest.FixtureRequest) -> None:
    image, mask = request.getfixturevalue(scan)
    assert mask.labels.GetSize() == image.GetSize()
    assert mask.labels.GetOrigin() == image.GetOrigin()
    assert 1000.0 <= mask.right_volume_ml <= 4500.0
    assert 1000.0 <= mask.left_volume_ml <= 4500.0
    assert _centroid_x_lps(mask.labels, RIGHT) < _centroid_x_lps(mask.labels, LEFT)


def _dark_tubes(hu_slice: np.ndarray, pixel_mm2: float,
                min_mm2: float = 20.0) -> tuple[np.ndarray, list[int]]:
    """Labelled dark (< -900 HU) sections of a slice; those of airway size, off the border."""
    components, count = ndimage.label(hu_slice < -900)
    areas = np.bincount(components.ravel(), minlength=count + 1) * pixel_mm2
    border = set(np.concatenate([components[0], components[-1], components[:, 0],
                                 components[:, -1]]).tolist())
    return components, [i for i in range(1, count + 1)
                        if min_mm2 <= areas[i] <= 700.0 and i not in border]


def _follow(hu: np.ndarray, section: np.ndarray, slices: range,
            pixel_mm2: float) -> list[tuple[int, np.ndarray]]:
    """Follow a dark tube through ``slices`` by overlap; stops where it cannot continue."""
    followed = []
    for z in slices:
        components, tubes = _dark_tubes(hu[z], pixel_mm2)
        overlaps = {i: np.count_nonzero(section & (components == i)) for i in tubes}
        if not overlaps or max(overlaps.values()) == 0:
            break
        section = components == max(overlaps, key=overlaps.__getitem__)
        followed.append((z, section))
    return followed


def _trachea_sections(hu: np.ndarray, lungs: np.ndarray, spacing_xyz: tuple[float, ...],
                      depth_mm: float = 30.0) -> list[tuple[int, np.ndarray]]:
    """The trachea from above the lung apices to ``depth_mm`` below where both lungs are large.

    Arrays are (z, y, x) with z increasing towards the head. In the highest slice where both
    lungs are large, the trachea is the dark tube-sized section that can be followed up past
    the top of the lungs (pieces of lung end at the apex); it is then followed down.
    """
    pixel_mm2 = spacing_xyz[0] * spacing_xyz[1]
    big = 1000.0 / pixel_mm2  # 10 cm^2
    both = [z for z in range(hu.shape[0]) if np.count_nonzero(lungs[z] == RIGHT) > big
            and np.count_nonzero(lungs[z] == LEFT) > big]
    start = max(both)
    lung_top = int(np.nonzero(lungs.any(axis=(1, 2)))[0].max())
    components, tubes = _dark_tubes(hu[start], pixel_mm2, min_mm2=100.0)
    for tube in tubes:
        section = components == tube
        up = _follow(hu, section, range(start + 1, hu.shape[0]), pixel_mm2)
        if up and up[-1][0] > lung_top:
            below = range(start - 1, start - int(depth_mm / spacing_xyz[2]), -1)
            down = _follow(hu, section, below, pixel_mm2)
            return up + [(start, section)] + down
    return []


@pytest.mark.slow
@pytest.mark.parametrize("scan", LIDC_SCANS)
def test_lidc_trachea_outside_mask(scan: str, request: pytest.FixtureRequest) -> None:
    image, mask = request.getfixturevalue(scan)
    hu = _array(sitk.DICOMOrient(image, "LPS"))
    lungs = _array(sitk.DICOMOrient(mask.labels, "LPS"))
    sections = _trachea_sections(hu, lungs, image.GetSpacing())
    assert len(sections) >= 5, "trachea not found in the test scan"
    for z, section in sections:
        assert np.all(lungs[z][section] == 0), f"trachea labelled as lung in slice {z}"


def _lidc_large_nodule_centre(xml_path: Path) -> tuple[float, float, float]:
    """Centre (pixel x, pixel y, world z mm) of the nodule outlined by several readers.

    Minimal LIDC XML reading: every reader's nodule with more than one ROI is a contour of a
    nodule >= 3 mm; the one marked in the most reading sessions is the large nodule. Its
    centre is the mean of all its edge points (x, y pixel coordinates; z = imageZposition).
    """
    ns = {"l": "http://www.nih.gov"}
    reads = []  # (session, centre)
    for session_index, session in enumerate(ET.parse(xml_path).getroot().iterfind(
            "l:readingSession", ns)):
        for nodule in session.iterfind("l:unblindedReadNodule", ns):
            rois = nodule.findall("l:roi", ns)
            if len(rois) < 2:
                continue
            points = [(float(edge.findtext("l:xCoord", namespaces=ns)),
                       float(edge.findtext("l:yCoord", namespaces=ns)),
                       float(roi.findtext("l:imageZposition", namespaces=ns)))
                      for roi in rois for edge in roi.iterfind("l:edgeMap", ns)]
            reads.append((session_index, np.mean(points, axis=0)))
    first = reads[0][1]
    same = [centre for _, centre in reads if np.linalg.norm(centre - first) < 15.0]
    assert len({s for s, c in reads if np.linalg.norm(c - first) < 15.0}) >= 3
    return tuple(float(v) for v in np.mean(same, axis=0))  # type: ignore[return-value]


@pytest.mark.slow
def test_lidc_0001_nodule_inside_mask(lidc_0001: tuple[sitk.Image, LungMask],
                                      data_root: Path) -> None:
    image, mask = lidc_0001
    assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    px, py, z = _lidc_large_nodule_centre(
        require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "annotations.xml"))
    origin, spacing = image.GetOrigin(), image.GetSpacing()
    centre = (origin[0] + px * spacing[0], origin[1] + py * spacing[1], z)
    assert _label_at(mask.labels, centre) > 0

    # The nodule's dense voxels within 8 mm of its centre are all inside the lungs.
    hu, lungs = _array(image), _array(mask.labels)
    index = np.array(image.TransformPhysicalPointToIndex(centre))[::-1]
    zz, yy, xx = np.ogrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    spacing_zyx = spacing[::-1]
    ball = (((zz - index[0]) * spacing_zyx[0]) ** 2 + ((yy - index[1]) * spacing_zyx[1]) ** 2
            + ((xx - index[2]) * spacing_zyx[2]) ** 2) <= 8.0 ** 2
    dense = ball & (hu > -400)
    assert np.count_nonzero(dense) > 100
    assert np.mean(lungs[dense] > 0) > 0.95


@pytest.mark.parametrize("name", ["example_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_abdomen_with_lung_bases_is_not_a_lung_mask(name: str, data_root: Path) -> None:
    """Abdominal CT with only the lung bases: an error, or a mask that says it is partial."""
    image = sitk.Cast(sitk.ReadImage(str(require(data_root / "totalsegmentator_examples" / name))),
                      sitk.sitkInt16)
    try:
        mask = segment_lungs(image)
    except NoLungsFoundError:
        return
    assert any("cut off" in warning for warning in mask.warnings)


def test_cip_small_dice(data_root: Path) -> None:
    """Against the Chest Imaging Platform labelmap (value = type << 8 | region).

    CIP regions 2-14 are lungs (2 right lung, 3 left lung, 4-8 lobes, 9-11 left thirds,
    12-14 right thirds); region 0 with type 2 (airway) is the trachea, not lung.
    """
    folder = data_root / "cip_small"
    image = sitk.ReadImage(str(require(folder / "ct-64.nrrd")))
    regions = _array(sitk.ReadImage(str(require(folder / "lm-64.nrrd")))) & 0xFF
    right_regions, left_regions = [2, 4, 5, 6, 12, 13, 14], [3, 7, 8, 9, 10, 11]
    assert np.any(np.isin(regions, right_regions)) and np.any(np.isin(regions, left_regions))

    lungs = _array(segment_lungs(image).labels)
    assert _dice(lungs > 0, np.isin(regions, right_regions + left_regions)) >= 0.9
    assert _dice(lungs == RIGHT, np.isin(regions, right_regions)) >= 0.9
    assert _dice(lungs == LEFT, np.isin(regions, left_regions)) >= 0.9
