"""The emphysema simulator on real chest CT: severity, where lesions go, and nothing outside the lungs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from shared_data import require

from lungai.data.emphysema_sim import PATTERNS, EmphysemaSpec, estimate_texture, simulate_emphysema
from lungai.data.emphysema_simset import COLUMNS, SimulationSetConfig, check_source, make_simulation_set
from lungai.data.weak_labels import read_weak_labels
from lungai.errors import UnreadableInputError
from lungai.io.reader import read_scan
from lungai.preprocessing.densitometry import measure_densitometry
from lungai.preprocessing.emphysema_input import image_arrays, laa_percent
from lungai.preprocessing.lung_mask import segment_lungs


@pytest.fixture(scope="module")
def small_scan(data_root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """cip_small/ct-64.nrrd (a whole thorax at 4 mm) with LungAI's lung mask, as LPS arrays."""
    volume = read_scan(require(data_root / "cip_small" / "ct-64.nrrd"))
    return image_arrays(volume.image, segment_lungs(volume.image).labels)


def _zone_fractions(lesion: np.ndarray, lung: np.ndarray) -> tuple[float, float]:
    """Share of the lower and of the upper half (by lung height) covered by lesion."""
    slices = np.nonzero(lung.any(axis=(1, 2)))[0]
    middle = (slices[0] + slices[-1]) // 2
    lower, upper = slice(None, middle), slice(middle, None)
    return (lesion[lower].sum() / lung[lower].sum(), lesion[upper].sum() / lung[upper].sum())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_severity_is_met_and_only_the_lung_changes(small_scan, pattern: str) -> None:
    hu, lung, spacing = small_scan
    baseline = laa_percent(hu, lung)
    original = hu.copy()
    target = baseline + 8.0
    result = simulate_emphysema(hu, lung, spacing, EmphysemaSpec(pattern, target), np.random.default_rng(1))
    np.testing.assert_array_equal(hu, original)  # the input is not modified
    assert abs(laa_percent(result.hu, lung) - target) <= 2.0
    assert abs(result.achieved_percent - laa_percent(result.hu, lung)) < 1e-9
    changed = result.hu != hu
    assert changed.any() and not (changed & ~lung).any()
    np.testing.assert_array_equal(result.hu[~lung], hu[~lung])
    assert result.lesion.any() and not (result.lesion & ~lung).any()
    assert (result.hu[changed] <= hu[changed]).all()  # tissue is removed, never added


def test_the_densitometry_module_measures_the_requested_severity(small_scan) -> None:
    hu, lung, spacing = small_scan
    result = simulate_emphysema(hu, lung, spacing, EmphysemaSpec("paraseptal", 30.0), np.random.default_rng(2))
    image = sitk.GetImageFromArray(result.hu)
    image.SetSpacing(tuple(reversed(spacing)))
    mask = sitk.GetImageFromArray(lung.astype(np.uint8))
    mask.CopyInformation(image)
    assert measure_densitometry(image, mask).total.laa_percent[-950] == pytest.approx(30.0, abs=2.0)


def test_patterns_go_where_radiology_puts_them(small_scan) -> None:
    hu, lung, spacing = small_scan
    target = laa_percent(hu, lung) + 10.0
    centri = simulate_emphysema(hu, lung, spacing, EmphysemaSpec("centrilobular", target), np.random.default_rng(3))
    pan = simulate_emphysema(hu, lung, spacing, EmphysemaSpec("panlobular", target), np.random.default_rng(3))
    para = simulate_emphysema(hu, lung, spacing, EmphysemaSpec("paraseptal", target), np.random.default_rng(3))
    lower, upper = _zone_fractions(centri.lesion, lung)
    assert upper > 1.3 * lower
    lower, upper = _zone_fractions(pan.lesion, lung)
    assert lower > 2.0 * upper
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(lung, sampling=spacing)
    assert np.median(depth[para.lesion]) < np.median(depth[centri.lesion])


def test_same_seed_same_volume_and_impossible_severities_are_refused(small_scan) -> None:
    hu, lung, spacing = small_scan
    spec = EmphysemaSpec("centrilobular", laa_percent(hu, lung) + 3.0)
    a = simulate_emphysema(hu, lung, spacing, spec, np.random.default_rng(5))
    b = simulate_emphysema(hu, lung, spacing, spec, np.random.default_rng(5))
    np.testing.assert_array_equal(a.hu, b.hu)
    with pytest.raises(ValueError, match="below the scan's own LAA-950"):
        simulate_emphysema(hu, lung, spacing, EmphysemaSpec("panlobular", 1.0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown emphysema pattern"):
        EmphysemaSpec("bullous", 10.0)


def test_texture_follows_the_scan(small_scan) -> None:
    hu, lung, spacing = small_scan
    texture = estimate_texture(hu, lung, spacing)
    smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(hu.astype(np.float32)),
                                                                       1.0))
    smoother = estimate_texture(smoothed.astype(np.float32), lung, spacing)
    assert 5 < texture.noise_hu < 200
    assert smoother.noise_hu < texture.noise_hu
    assert smoother.psf_sigma_mm[2] > texture.psf_sigma_mm[2]


def test_dataset_folder_and_csv(data_root: Path, tmp_path: Path) -> None:
    source = require(data_root / "cip_small" / "ct-64.nrrd")
    csv_path = make_simulation_set(SimulationSetConfig(sources=(source,), out=tmp_path / "sim", n=6, seed=3))
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 6
    cases = read_weak_labels(csv_path)
    assert all(case.image_path.is_file() for case in cases)
    for row in rows:
        extent = float(row["extent_pp"])
        assert int(row["label"]) == int(row["pattern"] != "none" and extent >= 2.0)
        if row["pattern"] != "none":
            assert abs(float(row["laa950_percent"]) - float(row["severity_percent"])) <= 2.0
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "sim" / rows[0]["path"])))
    assert written.dtype == np.int16
    with pytest.raises(UnreadableInputError, match="exists"):
        make_simulation_set(SimulationSetConfig(sources=(source,), out=tmp_path / "sim", n=1))


def test_test_patients_are_refused_as_sources(data_root: Path) -> None:
    with pytest.raises(UnreadableInputError, match="whole-scan test patients"):
        check_source(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["centrilobular", "paraseptal"])
def test_on_the_real_background_scan_at_native_resolution(data_root: Path, pattern: str) -> None:
    volume = read_scan(require(data_root / "backgrounds" / "elastix_chest.nrrd"))
    hu, lung, spacing = image_arrays(volume.image, segment_lungs(volume.image).labels)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(lung))
    hu, lung = hu[box].copy(), lung[box].copy()
    target = laa_percent(hu, lung) + 6.0
    result = simulate_emphysema(hu, lung, spacing, EmphysemaSpec(pattern, target), np.random.default_rng(0))
    assert abs(laa_percent(result.hu, lung) - target) <= 2.0
    assert not ((result.hu != hu) & ~lung).any()
    assert result.texture.psf_sigma_mm[2] < 2.0 * spacing[2]
