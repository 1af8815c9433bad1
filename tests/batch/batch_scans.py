"""Small synthetic scans for the batch tests: phantom chests with lungs, and bad files."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from lungai.data.phantom import PhantomConfig, make_phantom

#: A coarse phantom chest: its lungs, emphysema and the emphysema model run in about a second.
SMALL = PhantomConfig(size=(96, 96, 50), spacing_mm=(3.0, 3.0, 5.0))
#: The tasks of the batch tests: lungs and densitometry, and one model (convlstm_scanner) to count loads of.
TASK_ARGS = ["--tasks", "lungs,emphysema", "--emphysema-probability", "--device", "cpu"]


def write_phantom(path: Path, seed: int = 0) -> Path:
    """A small phantom chest CT in the format of ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = PhantomConfig(size=SMALL.size, spacing_mm=SMALL.spacing_mm, seed=seed)
    sitk.WriteImage(make_phantom(config).image, str(path))
    return path


def write_garbage(path: Path) -> Path:
    """A file with a scan's suffix that holds no image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image")
    return path
