"""The nnU-Net raw export: layout, dataset.json, and that it follows LungAI's patient-level split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from shared_data import require

from lungai.baselines.nnunet_export import NnUNetExportConfig, export_nnunet_raw
from lungai.data.splits import load_split
from lungai.errors import OutputExistsError


@pytest.fixture(scope="module")
def exported(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    vois = require(data_root / "lidc_vois")
    out = tmp_path_factory.mktemp("raw")
    return vois, export_nnunet_raw(NnUNetExportConfig(data=vois, out=out, dataset_id=977, name="Smoke", limit=3))


def test_layout_and_dataset_json(exported) -> None:
    _, result = exported
    folder = result.folder
    assert folder.name == "Dataset977_Smoke"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "nodule": 1}
    assert meta["file_ending"] == ".nii.gz"
    training = result.train + result.val
    assert meta["numTraining"] == len(training) == 6
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == sorted(f"{c}_0000.nii.gz" for c in training)
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in training)
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == sorted(f"{c}_0000.nii.gz" for c in result.test)
    assert not list(folder.parent.glob(".*partial"))


def test_images_are_copied_and_labels_binary_on_the_same_grid(exported) -> None:
    vois, result = exported
    case = result.train[0]
    image = sitk.ReadImage(str(result.folder / "imagesTr" / f"{case}_0000.nii.gz"))
    label = sitk.ReadImage(str(result.folder / "labelsTr" / f"{case}.nii.gz"))
    original = sitk.ReadImage(str(vois / "image" / f"{case}.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original))
    assert label.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, 1}
    assert label.GetSize() == image.GetSize()
    assert np.allclose(label.GetSpacing(), image.GetSpacing()) and np.allclose(label.GetOrigin(), image.GetOrigin())


def test_split_is_lungai_patient_split(exported) -> None:
    _, result = exported
    split = load_split()
    for part, cases in (("train", result.train), ("val", result.val), ("test", result.test)):
        assert cases and all(split[c.split("_R_")[0]] == part for c in cases)
    folds = json.loads((result.folder / "splits_final.json").read_text())
    assert folds == [{"train": result.train, "val": result.val}]


def test_existing_dataset_is_not_overwritten(exported) -> None:
    vois, result = exported
    with pytest.raises(OutputExistsError):
        export_nnunet_raw(NnUNetExportConfig(data=vois, out=result.folder.parent, dataset_id=977, name="Smoke",
                                             limit=1))
