"""Bad input never gives a traceback, a wrong result or a half-written output.

Each case asserts the one-line message, the documented exit code, and that nothing was
left in the output location (neither the folder nor a hidden staging folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from shared_data import require
from synthetic_scans import box_phantom, write_dicom_series, write_image

from lungai.errors import (
    InputNotFoundError,
    NoLungsFoundError,
    NotCTError,
    OutputExistsError,
    ResourceError,
    SuspiciousInputError,
    UnreadableInputError,
)


def assert_rejected(scan: Path, out: Path, capsys, code: int, pattern: str, extra: list[str] | None = None) -> None:
    exit_code, _stdout, stderr = run_cli(["run", str(scan), "-o", str(out), "--device", "cpu",
                                          "--progress", "none", *(extra or [])], capsys)
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert exit_code == code, stderr
    assert len(lines) == 1 and pattern in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists(), "output folder left behind"
    assert not list(out.parent.glob(".lungai-*")), "staging folder left behind"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "results" / "run1"


def test_missing_path(tmp_path, out, capsys):
    assert_rejected(tmp_path / "nope.nrrd", out, capsys, InputNotFoundError.exit_code, "does not exist")


def test_not_a_file_or_folder(out, capsys):
    assert_rejected(Path("/dev/null"), out, capsys, InputNotFoundError.exit_code, "neither a file nor a folder")


def test_empty_file(tmp_path, out, capsys):
    (tmp_path / "empty.nrrd").write_bytes(b"")
    assert_rejected(tmp_path / "empty.nrrd", out, capsys, UnreadableInputError.exit_code, "empty file")


def test_corrupt_file(tmp_path, out, capsys):
    (tmp_path / "bad.nrrd").write_bytes(os.urandom(4096))
    assert_rejected(tmp_path / "bad.nrrd", out, capsys, UnreadableInputError.exit_code, "corrupt")


def test_truncated_file(tmp_path, out, capsys):
    path = write_image(box_phantom(), tmp_path / "scan.nrrd")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_rejected(path, out, capsys, UnreadableInputError.exit_code, "truncated or corrupt")


def test_unsupported_extension(tmp_path, out, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert_rejected(tmp_path / "notes.txt", out, capsys, UnreadableInputError.exit_code, "unsupported file type .txt")


def test_empty_dicom_folder(tmp_path, out, capsys):
    (tmp_path / "empty").mkdir()
    assert_rejected(tmp_path / "empty", out, capsys, UnreadableInputError.exit_code, "no DICOM files")


def test_folder_without_dicom(tmp_path, out, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    assert_rejected(tmp_path / "docs", out, capsys, UnreadableInputError.exit_code, "no DICOM files")


def test_corrupt_zip(tmp_path, out, capsys):
    (tmp_path / "scan.zip").write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert_rejected(tmp_path / "scan.zip", out, capsys, UnreadableInputError.exit_code, "cannot read zip")


def test_zip_with_path_traversal(tmp_path, out, capsys):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape.dcm", b"x")
    assert_rejected(tmp_path / "evil.zip", out, capsys, UnreadableInputError.exit_code, "unsafe path")
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_non_ct_modality(tmp_path, out, capsys):
    write_dicom_series(tmp_path / "mr", box_phantom(shape=(12, 32, 32)).astype(float) + 1024, modality="MR")
    assert_rejected(tmp_path / "mr", out, capsys, NotCTError.exit_code, "modality MR")


def test_2d_image(tmp_path, out, capsys):
    image = sitk.GetImageFromArray(np.zeros((64, 64), np.int16))
    sitk.WriteImage(image, str(tmp_path / "slice.nrrd"))
    assert_rejected(tmp_path / "slice.nrrd", out, capsys, NotCTError.exit_code, "2D image")


def test_too_few_slices(tmp_path, out, capsys):
    path = write_image(box_phantom(shape=(5, 32, 32)), tmp_path / "thin.nii.gz")
    assert_rejected(path, out, capsys, NotCTError.exit_code, "only 5 slices")


def test_too_few_dicom_slices(tmp_path, out, capsys):
    write_dicom_series(tmp_path / "few", box_phantom(shape=(4, 32, 32)))
    assert_rejected(tmp_path / "few", out, capsys, NotCTError.exit_code, "only 4 slices")


def test_rgb_image(tmp_path, out, capsys):
    image = sitk.GetImageFromArray(np.zeros((12, 32, 32, 3), np.uint8), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "rgb.nrrd"))
    assert_rejected(tmp_path / "rgb.nrrd", out, capsys, NotCTError.exit_code, "colour/vector image")


@pytest.mark.parametrize("spacing", [(0.05, 0.05, 1.0), (1.0, 1.0, 25.0)])
def test_absurd_spacing(tmp_path, out, capsys, spacing):
    path = write_image(box_phantom(), tmp_path / "scan.nrrd", spacing=spacing)
    assert_rejected(path, out, capsys, NotCTError.exit_code, "implausible voxel spacing")


def test_nan_values(tmp_path, out, capsys):
    array = box_phantom().astype(np.float32)
    array[3, 3, 3] = np.nan
    array[4, 4, 4] = np.inf
    path = write_image(array, tmp_path / "nan.nrrd")
    assert_rejected(path, out, capsys, NotCTError.exit_code, "2 NaN or infinite voxels")


def test_unsigned_raw_values_not_hu(tmp_path, out, capsys):
    path = write_image((box_phantom() + 1024).astype(np.uint16), tmp_path / "raw.nrrd")
    assert_rejected(path, out, capsys, SuspiciousInputError.exit_code, "does not look like Hounsfield units")


def test_force_skips_only_soft_checks(tmp_path, out, capsys):
    raw = write_image((box_phantom() + 1024).astype(np.uint16), tmp_path / "raw.nrrd")
    # Past the HU check with --force, the box has no lungs: the hard check still stops it.
    assert_rejected(raw, out, capsys, NoLungsFoundError.exit_code, "no lungs", extra=["--force"])
    thin = write_image(box_phantom(shape=(5, 32, 32)), tmp_path / "thin.nrrd")
    assert_rejected(thin, out, capsys, NotCTError.exit_code, "only 5 slices", extra=["--force"])


def test_volume_too_large_for_memory(tmp_path, out, capsys):
    # A header-only MetaImage: the size is checked before any pixel is read.
    (tmp_path / "huge.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4096 4096 8192\n"
                                       "ElementSpacing = 0.5 0.5 0.5\nElementType = MET_SHORT\n"
                                       "ElementDataFile = missing.raw\n")
    assert_rejected(tmp_path / "huge.mhd", out, capsys, ResourceError.exit_code, "too large")


def test_no_lungs_in_a_water_phantom(tmp_path, out, capsys):
    array = box_phantom(shape=(40, 64, 64), inside=0)
    path = write_image(array, tmp_path / "water.nrrd", spacing=(5.0, 5.0, 5.0))
    assert_rejected(path, out, capsys, NoLungsFoundError.exit_code, "no lungs")


@pytest.mark.slow
def test_abdominal_ct_has_no_lungs(data_root, out, capsys):
    scan = require(data_root / "totalsegmentator_examples" / "example_ct.nii.gz")
    exit_code, _stdout, stderr = run_cli(["run", str(scan), "-o", str(out), "--device", "cpu",
                                          "--progress", "none"], capsys)
    if exit_code == 0:  # a partial-lung result is acceptable only with a clear warning
        assert "partial" in stderr.lower()
    else:
        assert exit_code == NoLungsFoundError.exit_code and "no lungs" in stderr.lower()
        assert not out.exists()


def test_existing_output_refused(tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    path = write_image(box_phantom(), tmp_path / "scan.nrrd")
    exit_code, _, stderr = run_cli(["run", str(path), "-o", str(out), "--device", "cpu"], capsys)
    assert exit_code == OutputExistsError.exit_code and "--overwrite" in stderr
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args, pattern", [
    (["--device", "tpu"], "unknown device"),
    (["--tasks", "lungs,spleen"], "unknown task"),
])
def test_bad_options_are_usage_errors(tmp_path, capsys, args, pattern):
    path = write_image(box_phantom(), tmp_path / "scan.nrrd")
    exit_code, _, stderr = run_cli(["run", str(path), "-o", str(tmp_path / "o"), *args], capsys)
    assert exit_code == 2 and pattern in stderr
    assert not (tmp_path / "o").exists()


def test_unavailable_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = write_image(box_phantom(), tmp_path / "scan.nrrd")
    exit_code, _, stderr = run_cli(["run", str(path), "-o", str(tmp_path / "o"), "--device", "cuda"], capsys)
    assert exit_code == ResourceError.exit_code and "CUDA" in stderr
    assert not (tmp_path / "o").exists()


def test_no_traceback_in_a_real_process(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b" + os.urandom(200))
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "run", str(tmp_path / "bad.nii.gz"),
                             "-o", str(tmp_path / "o"), "--device", "cpu", "--progress", "none"],
                            capture_output=True, text=True)
    assert result.returncode == UnreadableInputError.exit_code
    assert result.stderr.strip().startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
