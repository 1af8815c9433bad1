"""Segmentation datasets in nnU-Net raw or Medical Segmentation Decathlon (MSD) layout.

nnU-Net v2 raw::

    <root>/dataset.json               channel_names, labels (name -> value), file_ending
    <root>/imagesTr/<case>_0000.nii.gz one file per channel (_0000, _0001, ...)
    <root>/labelsTr/<case>.nii.gz      integer label map on the image grid

MSD (and nnU-Net v1) ``dataset.json`` instead has ``modality`` (index -> name), ``labels``
(value -> name) and a ``training`` list of ``{"image": ..., "label": ...}`` paths; the image
file is used as listed, or, where it does not exist (nnU-Net v1), with channel suffixes.
Multi-modal 4D MSD images are refused; convert them with ``nnUNetv2_convert_MSD_dataset``.

These layouts have no patient ids: the case id stands in for the patient, so split such a set
by case only where each patient has one case. Models see pixels only: the label map is the
target, never an input.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungai.errors import InputNotFoundError, UnreadableInputError
from lungai.io.volume_arrays import VolumeArray, read_array, same_grid

logger = logging.getLogger(__name__)

DEFAULT_FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class SegmentationSample:
    """One loaded case.

    Attributes:
        case_id: the case identifier.
        channels: float32, shape (channels, z, y, x), LPS.
        label: uint8 label map (z, y, x) on the same grid, or ``None`` for unlabelled cases.
        spacing_zyx: voxel spacing in mm, (z, y, x).
        origin_lps: world position (LPS mm) of voxel (0, 0, 0).
    """

    case_id: str
    channels: np.ndarray
    label: np.ndarray | None
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]


@dataclass(frozen=True)
class SegmentationCase:
    """One case; nothing is read until :meth:`load`.

    Attributes:
        case_id: e.g. ``lung_001``; also its :attr:`patient_id`.
        image_paths: one file per channel, in channel order.
        label_path: the label map.
    """

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path

    @property
    def patient_id(self) -> str:
        """The case id (these layouts have no patient ids)."""
        return self.case_id

    def load(self) -> SegmentationSample:
        """Read the channels and the label map, reoriented to LPS.

        Raises:
            InputNotFoundError, UnreadableInputError: a file is missing or unreadable, is not
                3D, or is not on the first channel's grid.
        """
        channels = [_read_3d(path, np.float32) for path in self.image_paths]
        label = _read_3d(self.label_path, np.uint8)
        for path, volume in zip((*self.image_paths[1:], self.label_path), (*channels[1:], label)):
            if not same_grid(channels[0], volume):
                raise UnreadableInputError(f"{path} is not on the grid of {self.image_paths[0]}",
                                           "resample it to the image grid")
        return SegmentationSample(case_id=self.case_id, channels=np.stack([c.array for c in channels]),
                                  label=label.array, spacing_zyx=channels[0].spacing_zyx,
                                  origin_lps=channels[0].origin_lps)


def _read_3d(path: Path, dtype: type) -> VolumeArray:
    volume = read_array(path, dtype)
    if volume.array.ndim != 3:
        raise UnreadableInputError(f"{path} is not a 3D image",
                                   "convert multi-modal MSD data with nnUNetv2_convert_MSD_dataset")
    return volume


@dataclass(frozen=True)
class SegmentationDataset:
    """A listed nnU-Net raw / MSD dataset.

    Attributes:
        root: the dataset folder.
        channel_names: channel index -> name (e.g. ``{0: "CT"}``).
        labels: label value -> name (e.g. ``{0: "background", 1: "cancer"}``).
        cases: the training cases that have all their files, sorted by case id.
        incomplete_cases: training case ids with a missing image or label file.
        images_without_labels: case ids with images in ``imagesTr`` but no label map.
    """

    root: Path
    channel_names: dict[int, str]
    labels: dict[int, str]
    cases: list[SegmentationCase]
    incomplete_cases: list[str]
    images_without_labels: list[str]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputNotFoundError(f"{path} does not exist", "give an nnU-Net raw or MSD dataset folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(f"{path} is not valid JSON ({exc})", "fix the file") from exc


def _channels(meta: dict, where: Path) -> dict[int, str]:
    channels = meta.get("channel_names") or meta.get("modality")
    if not isinstance(channels, dict) or not channels:
        raise UnreadableInputError(f"{where} has no channel_names (or modality)", "add e.g. {\"0\": \"CT\"}")
    return {int(k): str(v) for k, v in sorted(channels.items(), key=lambda kv: int(kv[0]))}


def _labels(meta: dict, where: Path) -> dict[int, str]:
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise UnreadableInputError(f"{where} has no labels", "add e.g. {\"background\": 0, \"nodule\": 1}")
    if all(str(k).lstrip("-").isdigit() for k in labels):  # MSD: value -> name
        return {int(k): str(v) for k, v in labels.items()}
    if not all(isinstance(v, int) for v in labels.values()):
        raise UnreadableInputError(f"{where}: region-based labels are not supported",
                                   "give one value per label")
    return {v: str(k) for k, v in labels.items()}  # nnU-Net v2: name -> value


def _strip(name: str, ending: str) -> str:
    return name[: -len(ending)] if name.endswith(ending) else name


def _channel_files(folder: Path, case: str, n_channels: int, ending: str) -> tuple[Path, ...]:
    return tuple(folder / f"{case}_{c:04d}{ending}" for c in range(n_channels))


def _training_entries(meta: dict, root: Path, ending: str,
                      n_channels: int) -> list[tuple[str, tuple[Path, ...], Path]]:
    """(case id, image files, label file) of every training case."""
    if isinstance(meta.get("training"), list):
        entries = []
        for entry in meta["training"]:
            label = (root / entry["label"]).resolve()
            case = _strip(label.name, ending)
            image = (root / entry["image"]).resolve()
            images = (image,) if image.is_file() else _channel_files(image.parent, case, n_channels, ending)
            entries.append((case, images, label))
        return entries
    labels = sorted((root / "labelsTr").glob(f"*{ending}"))
    return [(_strip(p.name, ending), _channel_files(root / "imagesTr", _strip(p.name, ending), n_channels, ending),
             p) for p in labels]


def list_nnunet_raw(root: str | Path) -> SegmentationDataset:
    """List an nnU-Net raw or MSD dataset without reading any image.

    Args:
        root: the folder holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.

    Returns:
        The dataset's metadata and training cases.

    Raises:
        InputNotFoundError: no ``dataset.json``.
        UnreadableInputError: ``dataset.json`` is malformed, or lacks channels or labels.
    """
    root = Path(root)
    meta = _read_json(root / "dataset.json")
    channels, labels = _channels(meta, root / "dataset.json"), _labels(meta, root / "dataset.json")
    ending = str(meta.get("file_ending", DEFAULT_FILE_ENDING))
    cases, incomplete = [], []
    for case, images, label in _training_entries(meta, root, ending, len(channels)):
        if label.is_file() and all(p.is_file() for p in images):
            cases.append(SegmentationCase(case, images, label))
        else:
            incomplete.append(case)
    pattern = re.compile(rf"^(.+)_\d{{4}}{re.escape(ending)}$")
    with_images = {m[1] for p in (root / "imagesTr").glob(f"*{ending}") if (m := pattern.match(p.name))}
    without_labels = sorted(with_images - {c.case_id for c in cases} - set(incomplete))
    if incomplete:
        logger.warning("%d case(s) of %s with missing files, e.g. %s", len(incomplete), root, incomplete[0])
    if without_labels:
        logger.warning("%d case(s) of %s without a label map, e.g. %s", len(without_labels), root,
                       without_labels[0])
    logger.info("listed %d cases in %s (channels %s)", len(cases), root, ", ".join(channels.values()))
    return SegmentationDataset(root, channels, labels, sorted(cases, key=lambda c: c.case_id), incomplete,
                               without_labels)
