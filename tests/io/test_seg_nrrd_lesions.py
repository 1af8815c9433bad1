"""The .seg.nrrd of a real scan with nodules and a mass, read back with slicerio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from outputs_cases import CASE_STRUCTURES, Case

from lungai import labels
from lungai.io.segmentation import write_segmentation_files


@pytest.fixture(scope="module")
def written(lidc20_case: Case, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("segnrrd")
    return write_segmentation_files(lidc20_case.label_image, CASE_STRUCTURES, folder, "scan")


def test_one_segment_per_nodule_and_mass(written: tuple[Path, Path]) -> None:
    segmentation = slicerio.read_segmentation(str(written[0]), skip_voxels=True)
    assert slicerio.segment_names(segmentation) == ["Right lung", "Left lung", "Nodule 1", "Nodule 2", "Mass 3"]
    for index in (1, 2):
        segment = slicerio.segment_from_name(segmentation, f"Nodule {index}")
        structure = labels.nodule(index)
        assert segment["labelValue"] == labels.NODULE_BASE_VALUE + index
        assert segment["terminology"]["type"] == ["SCT", "27925004", "Nodule"]
        assert segment["terminology"]["category"] == list(labels.ALTERED_STRUCTURE)
        assert segment["terminology"]["anatomicRegion"] == list(labels.LUNG)
        np.testing.assert_allclose(segment["color"], structure.color, atol=1e-4)
    colors = [tuple(np.round(segment["color"], 3)) for segment in segmentation["segments"]]
    assert len(set(colors)) == len(colors)
    mass = slicerio.segment_from_name(segmentation, "Mass 3")
    assert mass["labelValue"] == labels.NODULE_BASE_VALUE + 3
    assert mass["terminology"]["type"] == ["SCT", "4147007", "Mass"]


def test_voxels_agree_with_the_label_image_and_nifti(written: tuple[Path, Path], lidc20_case: Case) -> None:
    expected = sitk.GetArrayFromImage(lidc20_case.label_image)
    segmentation = slicerio.read_segmentation(str(written[0]))
    np.testing.assert_array_equal(segmentation["voxels"].transpose(2, 1, 0), expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(written[1]))), expected)


def test_a_nodule_missing_from_the_structures_is_refused(lidc20_case: Case, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"label values \[12, 13\]"):
        write_segmentation_files(lidc20_case.label_image, labels.with_nodules(1), tmp_path, "scan")


def test_every_nodule_gets_its_own_value_and_colour() -> None:
    structures = labels.with_nodules(40)
    nodules = structures[len(labels.STRUCTURES):]
    assert [s.name for s in nodules[:2]] == ["Nodule 1", "Nodule 2"] and len(nodules) == 40
    assert len({s.value for s in structures}) == len(structures)
    assert len({s.color for s in structures}) == len(structures)
    with pytest.raises(ValueError):
        labels.with_nodules(-1)
