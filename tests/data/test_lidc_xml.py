"""LIDC reader XML: parsing, rasterising contours, grouping readers and the 50% consensus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from shared_data import require

from lungai.data.lidc_consensus import ConsensusNodule, consensus_nodules, reader_mask
from lungai.data.lidc_xml import ReaderAnnotation, parse_lidc_xml
from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.io.reader import read_scan


def _roi(z: float, points: list[tuple[int, int]], inclusion: bool = True) -> str:
    edges = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in points)
    return (f"<roi><imageZposition>{z}</imageZposition><imageSOP_UID>1.2.{z}</imageSOP_UID>"
            f"<inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>{edges}</roi>")


def _square(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def _nodule(nodule_id: str, rois: str, malignancy: int | None = None) -> str:
    ratings = ("<characteristics><subtlety>4</subtlety><texture>5</texture>"
               f"<malignancy>{malignancy}</malignancy></characteristics>") if malignancy is not None else ""
    return f"<unblindedReadNodule><noduleID>{nodule_id}</noduleID>{ratings}{rois}</unblindedReadNodule>"


def _session(reader_id: str, body: str) -> str:
    return (f"<readingSession><servicingRadiologistID>{reader_id}</servicingRadiologistID>{body}"
            "</readingSession>")


def _write_xml(path: Path, sessions: list[str]) -> Path:
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<LidcReadMessage xmlns="http://www.nih.gov">'
                    "<ResponseHeader><Version>1.8</Version></ResponseHeader>"
                    f"{''.join(sessions)}</LidcReadMessage>")
    return path


def _grid(size: tuple[int, int, int] = (40, 30, 6)) -> sitk.Image:
    """An axial LPS image: 1 mm pixels, slices at z = -10, -8, ..., 0 mm."""
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((-20.0, -15.0, -10.0))
    return image


@pytest.fixture
def synthetic(tmp_path: Path) -> list[ReaderAnnotation]:
    nodule_a = _roi(-6.0, _square(10, 5, 14, 9)) + _roi(-4.1, _square(10, 5, 14, 9))
    hole = _roi(-6.0, _square(11, 6, 13, 8), inclusion=False)
    non_nodule = ("<nonNodule><nonNoduleID>nn</nonNoduleID><imageZposition>-8.0</imageZposition>"
                  "<imageSOP_UID>1.2.3</imageSOP_UID><locus><xCoord>3</xCoord><yCoord>4</yCoord></locus>"
                  "</nonNodule>")
    sessions = [
        _session("r1", _nodule("N1", nodule_a + hole, malignancy=5) + _nodule("small", _roi(-2.0, [(30, 20)]))
                 + non_nodule),
        _session("r2", _nodule("X", _roi(-6.0, _square(12, 5, 16, 9)), malignancy=3)
                 + _nodule("far", _roi(-2.0, _square(30, 20, 33, 23)) + _roi(40.0, _square(1, 1, 3, 3)))),
        _session("r3", _nodule("no ratings", _roi(-6.0, _square(11, 6, 15, 10)))),
    ]
    return parse_lidc_xml(_write_xml(tmp_path / "read.xml", sessions))


def test_parse_readers_nodules_small_nodules_non_nodules(synthetic: list[ReaderAnnotation]) -> None:
    assert [r.reader_index for r in synthetic] == [0, 1, 2]
    assert [r.radiologist_id for r in synthetic] == ["r1", "r2", "r3"]
    first = synthetic[0]
    assert [n.nodule_id for n in first.nodules] == ["N1"]
    assert [n.nodule_id for n in first.small_nodules] == ["small"]
    assert first.non_nodules[0].point_xy == (3, 4) and first.non_nodules[0].z_mm == -8.0
    nodule = first.nodules[0]
    assert nodule.malignancy == 5 and nodule.characteristics == {"subtlety": 4, "texture": 5, "malignancy": 5}
    assert [c.inclusion for c in nodule.contours] == [True, True, False]
    assert nodule.contours[0].points_xy.shape == (5, 2) and tuple(nodule.contours[0].points_xy[1]) == (14, 5)
    assert synthetic[2].nodules[0].malignancy is None


def test_reader_mask_fills_contours_with_boundary_and_holes(synthetic: list[ReaderAnnotation]) -> None:
    mask = reader_mask(synthetic[0], _grid())
    assert mask.shape == (6, 30, 40) and mask.dtype == np.uint8
    # z = -6 is slice 2, z = -4.1 is nearest slice 3; x0..x1 = columns 10..14, rows 5..9 (boundary included).
    expected = np.zeros((30, 40), np.uint8)
    expected[5:10, 10:15] = 1
    np.testing.assert_array_equal(mask[3], expected)
    expected[7, 12] = 0  # the exclusion's interior (its boundary stays)
    np.testing.assert_array_equal(mask[2], expected)
    assert mask[[0, 1, 4, 5]].sum() == 0  # the small nodule at z = -2 is never drawn


def test_mirrored_original_orientation(synthetic: list[ReaderAnnotation]) -> None:
    mask = reader_mask(synthetic[0], _grid(), original_orientation="RAS")
    assert mask[3, 30 - 1 - 9:30 - 5, 40 - 1 - 14:40 - 10].all() and mask[3].sum() == 25
    with pytest.raises(ValueError, match="not axial"):
        reader_mask(synthetic[0], _grid(), original_orientation="LSP")


def test_consensus_groups_readers_and_votes(synthetic: list[ReaderAnnotation]) -> None:
    nodules = consensus_nodules(synthetic, _grid())
    assert [n.num_readers for n in nodules] == [3, 1]
    first, second = nodules
    assert first.index == 1 and first.readers == (0, 1, 2)
    assert first.malignancy == {0: 5, 1: 3, 2: None}
    # Slice 2: at least 2 of the 3 readers; slice 3: only reader 0 drew there (1 vote < 2).
    votes = np.zeros(first.shape_zyx, int)
    for voxels in first.reader_voxels.values():
        votes.flat[voxels] += 1
    np.testing.assert_array_equal(first.mask, (votes >= 2).astype(np.uint8))
    assert first.mask[3].sum() == 0 and first.mask[2].sum() > 0
    assert first.volume_mm3 == pytest.approx(2.0 * first.mask.sum())
    assert first.diameter_mm == pytest.approx((6 * first.volume_mm3 / np.pi) ** (1 / 3))
    # Reader 1's far nodule: one vote is half of one reader, so its whole outline; z = 40 is off the image.
    assert second.readers == (1,) and second.mask.sum() == 16 and second.mask[4].sum() == 16
    assert second.centroid_lps == pytest.approx((-20.0 + 31.5, -15.0 + 21.5, -2.0))
    assert second.mask_image(_grid()).GetSize() == (40, 30, 6)
    assert [n.index for n in consensus_nodules(synthetic, _grid(), min_readers=2)] == [1]


def test_non_axial_image_is_refused(synthetic: list[ReaderAnnotation]) -> None:
    image = _grid()
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="axial"):
        consensus_nodules(synthetic, image)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        parse_lidc_xml(tmp_path / "absent.xml")
    (tmp_path / "broken.xml").write_text("<LidcReadMessage><readingSession>")
    with pytest.raises(UnreadableInputError, match="well-formed"):
        parse_lidc_xml(tmp_path / "broken.xml")
    (tmp_path / "cxr.xml").write_text("<IdriReadMessage><CXRreadingSession/></IdriReadMessage>")
    with pytest.raises(UnreadableInputError, match="readingSession"):
        parse_lidc_xml(tmp_path / "cxr.xml")


Scan = tuple[np.ndarray, sitk.Image, list[ReaderAnnotation], list[ConsensusNodule]]


def _scan_and_nodules(folder: Path, scan_name: str) -> Scan:
    volume = read_scan(require(folder / scan_name))
    annotations = parse_lidc_xml(require(folder / "annotations.xml"))
    nodules = consensus_nodules(annotations, volume.image, original_orientation=volume.original_orientation)
    return sitk.GetArrayFromImage(volume.image), volume.image, annotations, nodules


@pytest.fixture(scope="module")
def lidc_0001(data_root: Path) -> Scan:
    return _scan_and_nodules(data_root / "lidc_scans" / "LIDC-IDRI-0001", "dicom.zip")


@pytest.fixture(scope="module")
def lidc_0002(data_root: Path) -> Scan:
    return _scan_and_nodules(data_root / "lidc_scans" / "LIDC-IDRI-0002", "LIDC-IDRI-0002.nrrd")


def _lung_bounding_box(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, y, x) index bounds of the large air regions that do not touch the in-plane border.

    Worked out on every second row and column (for speed), then scaled back.
    """
    air = hu[:, ::2, ::2] < -500
    labels, count = ndimage.label(air)
    border = np.unique(np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()]))
    sizes = ndimage.sum_labels(air, labels, index=np.arange(1, count + 1))
    keep = [i for i in range(1, count + 1) if i not in border and sizes[i - 1] > 20_000]
    index = np.argwhere(np.isin(labels, keep)) * [1, 2, 2]
    return index.min(axis=0), index.max(axis=0)


@pytest.mark.slow
def test_lidc_0001_one_large_nodule_four_readers(lidc_0001: Scan) -> None:
    hu, image, annotations, nodules = lidc_0001
    assert len(annotations) == 4
    assert [len(a.nodules) for a in annotations] == [1, 1, 1, 1]
    assert len(nodules) == 1
    nodule = nodules[0]
    assert nodule.num_readers == 4
    assert sorted(nodule.malignancy.values()) == [4, 5, 5, 5]
    assert 20.0 <= nodule.diameter_mm <= 28.0
    low, high = _lung_bounding_box(hu)
    assert np.all((high - low) * image.GetSpacing()[::-1] > [150.0, 100.0, 200.0])  # both lungs
    centre = np.asarray(image.TransformPhysicalPointToContinuousIndex(nodule.centroid_lps))[::-1]
    assert np.all(centre >= low) and np.all(centre <= high)


@pytest.mark.slow
def test_lidc_0001_consensus_mask_lies_on_the_nodule_in_the_image(lidc_0001: Scan) -> None:
    """Acceptance: the XML-derived mask sits on soft tissue surrounded by lung in the CT itself."""
    hu, _, _, nodules = lidc_0001
    mask = nodules[0].mask.astype(bool)
    shell = ndimage.binary_dilation(mask, iterations=3) & ~mask
    assert hu[mask].mean() > -300, "the consensus mask is not on the nodule"
    assert hu[shell].mean() < -500, "the surroundings of the mask are not lung"
    # Shifting the mask by 5 pixels (3.5 mm) in-plane only makes it less dense: it is centred on the nodule.
    for shift in ((0, 5, 0), (0, -5, 0), (0, 0, 5), (0, 0, -5)):
        assert hu[np.roll(mask, shift, axis=(0, 1, 2))].mean() < hu[mask].mean()


@pytest.mark.slow
def test_lidc_0002_ground_glass_nodule_two_of_four_readers(lidc_0002: Scan) -> None:
    hu, image, annotations, nodules = lidc_0002
    assert len(annotations) == 4
    assert sum(len(a.nodules) for a in annotations) == 2
    assert sum(len(a.small_nodules) for a in annotations) > 0
    assert sum(len(a.non_nodules) for a in annotations) > 0
    assert len(nodules) == 1
    nodule = nodules[0]
    assert nodule.num_readers == 2 and sorted(nodule.malignancy.values()) == [4, 5]
    assert all(c["texture"] <= 2 for c in nodule.characteristics.values())  # ground glass
    assert -850 < hu[nodule.mask.astype(bool)].mean() < -300  # denser than lung, not solid
    assert consensus_nodules(annotations, image, min_readers=3) == []
