"""Write the LIDC nodule VOIs as an nnU-Net v2 raw dataset, from LungAI's committed split.

Layout written (nnU-Net v2's raw dataset contract)::

    <out>/Dataset<NNN>_<Name>/dataset.json          channel 0 "CT", labels background 0, nodule 1
    <out>/Dataset<NNN>_<Name>/imagesTr/<case>_0000.nii.gz   train + val patients
    <out>/Dataset<NNN>_<Name>/labelsTr/<case>.nii.gz        binary uint8 mask, same grid
    <out>/Dataset<NNN>_<Name>/imagesTs/<case>_0000.nii.gz   test patients (no labels)
    <out>/Dataset<NNN>_<Name>/splits_final.json     fold 0 = LungAI's train / val patients

The split is the patient-level split the LungAI models use (:func:`lungai.data.splits.load_split`),
so nnU-Net never sees a test patient. ``splits_final.json`` lets nnU-Net's fold 0 train and
validate on exactly LungAI's train / val cases; :mod:`lungai.baselines.nnunet_runner` copies it
into the preprocessed folder. Training on fold ``all`` uses train + val, as a final nnU-Net would.

Images are copied byte for byte (int16 HU, native spacing, LPS origin). The VOIs are small
(about 44 x 44 voxels in plane, 2 to 15 slices); they are not padded, because nnU-Net pads
every patch smaller than its patch size itself, in training and in sliding-window inference.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from lungai.data.lidc_vois import VOICase, list_vois
from lungai.data.splits import cases_for_split, load_split
from lungai.errors import OutputExistsError

logger = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
CHANNEL_SUFFIX = "_0000"
LABELS = {"background": 0, "nodule": 1}
TASKS = ("nodule-seg",)


@dataclass(frozen=True)
class NnUNetExportConfig:
    """One export of the VOI dataset.

    Attributes:
        data: folder laid out like ``lidc_vois/`` (``nodules.csv``, ``image/``, ``mask/``).
        out: the nnU-Net raw folder (``nnUNet_raw``); the dataset folder is made inside it.
        dataset_id: nnU-Net's dataset number (1-999).
        name: the dataset name after ``DatasetNNN_``.
        limit: at most this many cases per split (smoke tests); ``None`` exports all.
        overwrite: replace an existing dataset folder.
    """

    data: Path
    out: Path
    dataset_id: int = 501
    name: str = "LIDCNodules"
    limit: int | None = None
    overwrite: bool = False

    @property
    def dataset_name(self) -> str:
        """``Dataset<NNN>_<Name>``, as nnU-Net names dataset folders."""
        return f"Dataset{self.dataset_id:03d}_{self.name}"


@dataclass(frozen=True)
class NnUNetExport:
    """What an export wrote.

    Attributes:
        folder: the dataset folder.
        train: case ids in ``imagesTr`` from LungAI's train split.
        val: case ids in ``imagesTr`` from LungAI's val split.
        test: case ids in ``imagesTs``.
    """

    folder: Path
    train: list[str]
    val: list[str]
    test: list[str]


def _write_case(case: VOICase, images: Path, labels: Path | None) -> None:
    shutil.copyfile(case.image_path, images / f"{case.case_id}{CHANNEL_SUFFIX}{FILE_ENDING}")
    if labels is not None:
        mask = sitk.ReadImage(str(case.mask_path))
        binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
        binary.CopyInformation(mask)
        sitk.WriteImage(binary, str(labels / f"{case.case_id}{FILE_ENDING}"), useCompression=True)


def _dataset_json(n_training: int) -> dict:
    return {"channel_names": {"0": "CT"}, "labels": dict(LABELS), "numTraining": n_training,
            "file_ending": FILE_ENDING,
            "description": "LIDC-IDRI nodule VOIs exported by LungAI from its patient-level split"}


def _pick(cases: Sequence[VOICase], limit: int | None) -> list[VOICase]:
    return list(cases if limit is None else cases[:limit])


def export_nnunet_raw(config: NnUNetExportConfig) -> NnUNetExport:
    """Write the raw dataset (see the module docstring); written to a temporary folder, renamed at the end.

    Args:
        config: what to export and where.

    Returns:
        The dataset folder and the case ids per split.

    Raises:
        OutputExistsError: the dataset folder exists and ``overwrite`` is off.
        InputNotFoundError, UnreadableInputError: the VOI folder is missing or malformed.
    """
    folder = config.out / config.dataset_name
    if folder.exists() and not config.overwrite:
        raise OutputExistsError(f"{folder} exists", "pass --overwrite or choose another --dataset-id")
    split_map = load_split()
    cases = list_vois(config.data).cases
    parts = {part: _pick(cases_for_split(cases, split_map, part), config.limit) for part in ("train", "val", "test")}
    tmp = config.out / f".{config.dataset_name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    dirs = {name: tmp / name for name in ("imagesTr", "labelsTr", "imagesTs")}
    for path in dirs.values():
        path.mkdir(parents=True)
    for case in parts["train"] + parts["val"]:
        _write_case(case, dirs["imagesTr"], dirs["labelsTr"])
    for case in parts["test"]:
        _write_case(case, dirs["imagesTs"], None)
    ids = {part: [c.case_id for c in chosen] for part, chosen in parts.items()}
    (tmp / "dataset.json").write_text(json.dumps(_dataset_json(len(ids["train"]) + len(ids["val"])), indent=2),
                                      encoding="utf-8")
    (tmp / "splits_final.json").write_text(json.dumps([{"train": ids["train"], "val": ids["val"]}], indent=2),
                                           encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    logger.info("wrote %s: %d train, %d val, %d test cases", folder, len(ids["train"]), len(ids["val"]),
                len(ids["test"]))
    return NnUNetExport(folder=folder, train=ids["train"], val=ids["val"], test=ids["test"])
