"""Export / import of weights bundles for air-gapped machines: round trip and refusals."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
from weights_helpers import NAME, OTHER_REVISION, REVISION, copy_model, flip_last_byte

from lungai.errors import OutputExistsError, WeightsError
from lungai.weights.bundle import BUNDLE_INFO, export_bundle, import_bundle
from lungai.weights.manifest import Manifest
from lungai.weights.resolver import Source, check, weights_dir

INFO = {"format": "lungai-weights-bundle", "format_version": 1, "lungai_version": "0.1.0",
        "models": [{"name": NAME, "revision": REVISION}]}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _good_members(tiny_model: Path) -> dict[str, bytes]:
    return {BUNDLE_INFO: json.dumps(INFO).encode(),
            f"{NAME}/config.json": (tiny_model / "config.json").read_bytes(),
            f"{NAME}/model.safetensors": (tiny_model / "model.safetensors").read_bytes()}


def _assert_nothing_installed(tmp_path: Path) -> None:
    folder = weights_dir()
    assert not folder.exists() or list(folder.iterdir()) == [], "import left files behind"
    assert not (tmp_path / "evil").exists()


def test_export_then_import_on_a_clean_weights_dir(tmp_path: Path, manifest: Manifest, bundled: Path) -> None:
    bundle = export_bundle([NAME], tmp_path / "bundle.zip", manifest)
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(archive.namelist()) == sorted([BUNDLE_INFO, f"{NAME}/config.json", f"{NAME}/model.safetensors"])
        assert json.loads(archive.read(BUNDLE_INFO))["models"] == [{"name": NAME, "revision": REVISION}]
    assert not weights_dir().exists()
    assert import_bundle(bundle, manifest) == [NAME]
    status = check(NAME, manifest)
    assert (status.source, status.folder, status.verified) == (Source.WEIGHTS_DIR, weights_dir() / NAME, True)
    for filename in ("config.json", "model.safetensors"):
        assert (weights_dir() / NAME / filename).read_bytes() == (bundled / filename).read_bytes()
    assert sorted(p.name for p in weights_dir().iterdir()) == [NAME], "staging folder left behind"


def test_bundles_are_reproducible(tmp_path: Path, manifest: Manifest, bundled: Path) -> None:
    first = export_bundle([NAME], tmp_path / "a.zip", manifest).read_bytes()
    assert export_bundle([NAME], tmp_path / "b.zip", manifest).read_bytes() == first


def test_export_refuses_to_replace_without_overwrite(tmp_path: Path, manifest: Manifest, bundled: Path) -> None:
    (tmp_path / "bundle.zip").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        export_bundle([NAME], tmp_path / "bundle.zip", manifest)
    assert (tmp_path / "bundle.zip").read_bytes() == b"keep"
    export_bundle([NAME], tmp_path / "bundle.zip", manifest, overwrite=True)
    assert zipfile.is_zipfile(tmp_path / "bundle.zip")


def test_export_refuses_a_damaged_source(tmp_path: Path, manifest: Manifest, bundled: Path) -> None:
    flip_last_byte(bundled / "model.safetensors")
    with pytest.raises(WeightsError, match="failed verification"):
        export_bundle([NAME], tmp_path / "bundle.zip", manifest)
    assert list(tmp_path.glob("*.zip")) == [] and list(tmp_path.glob(".bundle.zip.*")) == []


@pytest.mark.parametrize("evil", [f"../{NAME}/config.json", "../evil/x", f"{NAME}/../../evil/x", "/tmp/evil",
                                  f"{NAME}\\..\\..\\evil", "C:/evil", f"./{NAME}/config.json"])
def test_path_traversal_is_refused(tmp_path: Path, manifest: Manifest, tiny_model: Path, evil: str) -> None:
    bundle = _zip(tmp_path / "evil.zip", {**_good_members(tiny_model), evil: b"x"})
    with pytest.raises(WeightsError, match="unsafe path"):
        import_bundle(bundle, manifest)
    _assert_nothing_installed(tmp_path)


@pytest.mark.parametrize("extra", [f"{NAME}/pytorch_model.bin", f"{NAME}/README.md", "notes.txt",
                                   "resunet3d/config.json", f"{NAME}/sub/config.json"])
def test_unknown_files_are_refused(tmp_path: Path, manifest: Manifest, tiny_model: Path, extra: str) -> None:
    bundle = _zip(tmp_path / "extra.zip", {**_good_members(tiny_model), extra: b"x"})
    with pytest.raises(WeightsError, match="unknown file"):
        import_bundle(bundle, manifest)
    _assert_nothing_installed(tmp_path)


def test_bad_checksum_is_refused_and_the_installed_copy_kept(tmp_path: Path, manifest: Manifest,
                                                             tiny_model: Path) -> None:
    installed = copy_model(tiny_model, weights_dir() / NAME)
    members = _good_members(tiny_model)
    members[f"{NAME}/model.safetensors"] = members[f"{NAME}/model.safetensors"][:-1] + b"\0"
    with pytest.raises(WeightsError, match="failed verification"):
        import_bundle(_zip(tmp_path / "bad.zip", members), manifest)
    assert sorted(p.name for p in weights_dir().iterdir()) == [NAME]
    assert check(NAME, manifest).verified and installed.is_dir()


def test_wrong_size_is_refused_before_extraction(tmp_path: Path, manifest: Manifest, tiny_model: Path) -> None:
    members = _good_members(tiny_model)
    members[f"{NAME}/model.safetensors"] += b"\0" * 1000
    with pytest.raises(WeightsError, match="the manifest expects"):
        import_bundle(_zip(tmp_path / "big.zip", members), manifest)
    _assert_nothing_installed(tmp_path)


def test_import_replaces_an_existing_copy(tmp_path: Path, manifest: Manifest, tiny_model: Path) -> None:
    damaged = copy_model(tiny_model, weights_dir() / NAME)
    flip_last_byte(damaged / "config.json")
    import_bundle(_zip(tmp_path / "good.zip", _good_members(tiny_model)), manifest)
    assert check(NAME, manifest).verified
    assert sorted(p.name for p in weights_dir().iterdir()) == [NAME]


def test_symbolic_link_members_are_refused(tmp_path: Path, manifest: Manifest, tiny_model: Path) -> None:
    bundle = tmp_path / "link.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name, data in _good_members(tiny_model).items():
            if name.endswith("config.json"):
                link = zipfile.ZipInfo(name)
                link.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(link, "/etc/passwd")
            else:
                archive.writestr(name, data)
    with pytest.raises(WeightsError, match="symbolic link"):
        import_bundle(bundle, manifest)
    _assert_nothing_installed(tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.pop(BUNDLE_INFO), "no lungai-bundle.json"),
    (lambda m: m.update({BUNDLE_INFO: b"{"}), "not valid JSON"),
    (lambda m: m.update({BUNDLE_INFO: json.dumps({**INFO, "format": "other"}).encode()}),
     "not a LungAI weights bundle"),
    (lambda m: m.update({BUNDLE_INFO: json.dumps(
        {**INFO, "models": [{"name": NAME, "revision": OTHER_REVISION}]}).encode()}), "this LungAI needs"),
    (lambda m: m.pop(f"{NAME}/config.json"), "does not match its files|lacks config.json"),
])
def test_inconsistent_bundles_are_refused(tmp_path: Path, manifest: Manifest, tiny_model: Path, change,
                                          message: str) -> None:
    members = _good_members(tiny_model)
    change(members)
    with pytest.raises(WeightsError, match=message):
        import_bundle(_zip(tmp_path / "odd.zip", members), manifest)
    _assert_nothing_installed(tmp_path)


def test_not_a_zip(tmp_path: Path, manifest: Manifest) -> None:
    (tmp_path / "bundle.zip").write_bytes(b"PK but not really")
    with pytest.raises(WeightsError, match="cannot open .* as a zip file"):
        import_bundle(tmp_path / "bundle.zip", manifest)
    with pytest.raises(WeightsError, match="cannot open"):
        import_bundle(tmp_path / "absent.zip", manifest)
