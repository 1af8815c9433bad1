"""``lungai weights``: list, fetch, verify, export and import, with one-line errors and exit code 10."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli
from weights_helpers import NAME, flip_last_byte

from lungai.weights.manifest import Manifest
from lungai.weights.resolver import weights_dir


@pytest.fixture
def use_manifest(manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> Manifest:
    """The CLI reads the test manifest instead of the installed one."""
    monkeypatch.setattr("lungai.cli.weights.read_manifest", lambda: manifest)
    return manifest


def test_list_shows_source_size_verified_and_bundled_total(use_manifest: Manifest, bundled: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["weights", "list"], capsys)
    row = next(line for line in out.splitlines() if line.startswith(NAME))
    assert code == 0
    assert row.split()[1:5] == ["bundled", f"{use_manifest.get(NAME).size / 1e6:.1f}", "MB", "yes"]
    assert "Bundled weights: 0.0 MB (limit 50.0 MB)" in out


def test_list_of_the_installed_package_reports_the_bundled_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["weights", "list"], capsys)
    assert code == 0 and "Bundled weights:" in out and "(limit 50.0 MB)" in out


def test_verify_fails_with_one_line_and_code_10(use_manifest: Manifest, bundled: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["weights", "verify"], capsys)[0] == 0
    flip_last_byte(bundled / "model.safetensors")
    code, out, err = run_cli(["weights", "verify"], capsys)
    assert code == 10 and "failed verification" in out
    assert err.count("error:") == 1 and "Traceback" not in err
    assert run_cli(["weights", "list"], capsys)[1].splitlines()[1].split()[4] == "FAILED"


def test_fetch_offline_with_nothing_local(use_manifest: Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["weights", "fetch", "--all"], capsys)
    assert code == 10
    assert err.startswith("error: weights for nodule_cnn2d are not installed") and err.count("\n") == 1
    assert "lungai weights import nodule_cnn2d.zip" in err


def test_fetch_reports_a_local_copy(use_manifest: Manifest, bundled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["weights", "fetch", NAME], capsys)
    assert code == 0 and out.strip() == f"{NAME}: bundled ({bundled})"


def test_usage_errors(use_manifest: Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["weights", "fetch"], capsys)[0] == 2
    assert run_cli(["weights", "fetch", NAME, "--all"], capsys)[0] == 2
    code, _, err = run_cli(["weights", "export", "nope", "-o", "x.zip"], capsys)
    assert code == 2 and "unknown model nope" in err


def test_export_import_round_trip(tmp_path: Path, use_manifest: Manifest, bundled: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle.zip"
    code, out, _ = run_cli(["weights", "export", NAME, "-o", str(bundle)], capsys)
    assert code == 0 and "lungai weights import bundle.zip" in out
    assert run_cli(["weights", "export", "--all", "-o", str(bundle)], capsys)[0] == 8
    code, out, _ = run_cli(["weights", "import", str(bundle)], capsys)
    assert code == 0 and out.strip() == f"Imported {NAME} into {weights_dir()}"
    row = next(line for line in run_cli(["weights", "list"], capsys)[1].splitlines() if line.startswith(NAME))
    assert row.split()[1] == "weights_dir"


def test_import_refuses_a_traversal_zip(tmp_path: Path, use_manifest: Manifest,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../evil.txt", "x")
    code, _, err = run_cli(["weights", "import", str(tmp_path / "evil.zip")], capsys)
    assert code == 10 and "unsafe path '../evil.txt'" in err
    assert not (tmp_path.parent / "evil.txt").exists()
