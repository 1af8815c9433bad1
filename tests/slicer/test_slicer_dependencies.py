"""Dependency set-up of the Slicer module (LungAI/LungAILib/dependencies.py), with fake installers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from shared_data import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def deps() -> Iterator[ModuleType]:
    """The module, loaded from its file as Slicer would find it (it is not part of lungai)."""
    path = REPO_ROOT / "LungAI" / "LungAILib" / "dependencies.py"
    spec = importlib.util.spec_from_file_location("LungAILib.dependencies", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_the_module_pins_the_version_in_pyproject(deps: ModuleType) -> None:
    assert deps.LUNGAI_VERSION == PYPROJECT["project"]["version"]


def test_the_torch_requirement_is_the_one_in_pyproject(deps: ModuleType) -> None:
    torch = [requirement for requirement in PYPROJECT["project"]["dependencies"] if requirement.startswith("torch")]
    assert torch == [f"torch{deps.TORCH_REQUIREMENT}"]


def test_dependency_requirements_leave_out_extras_and_what_slicer_provides(deps: ModuleType) -> None:
    requirements = ["numpy<3,>=1.26", "SimpleITK<3,>=2.3", "torch<2.15,>=2.2", "simple_itk_tools>=1",
                    'pytest<10,>=8; extra == "test"', "slicerio<2,>=1.1", 'tomli; python_version < "3.11"',
                    "Torchvision"]
    assert deps.dependency_requirements(requirements) == [
        "numpy<3,>=1.26", "simple_itk_tools>=1", "slicerio<2,>=1.1", 'tomli; python_version < "3.11"']


def test_the_installed_lungai_metadata_gives_the_core_dependencies(deps: ModuleType) -> None:
    kept = deps.dependency_requirements(importlib.metadata.requires("lungai") or [])
    names = {deps.normalize(deps._NAME.match(requirement).group(1)) for requirement in kept}  # noqa: SLF001
    assert {"numpy", "scipy", "slicerio", "pydicom"} <= names
    assert not names & {"simpleitk", "torch", "pytest"}


def test_pins_are_the_installed_versions(deps: ModuleType) -> None:
    versions = {"simpleitk": "2.4.0", "numpy": "1.26.4"}
    assert deps.pin_constraints(versions.get) == ["simpleitk==2.4.0", "numpy==1.26.4"]


@pytest.mark.parametrize(("installed", "torch_missing", "install_lungai", "missing"), [
    ({}, True, True, ()),
    ({"torch": "2.5.1"}, False, True, ()),
    ({"torch": "2.5.1", "lungai": "0.0.9"}, False, True, ()),
    ({"torch": "2.5.1", "lungai": "same", "numpy": "1.26.4"}, False, False, ()),
    ({"torch": "2.5.1", "lungai": "same"}, False, False, ("numpy",)),
])
def test_plan(deps: ModuleType, installed: dict[str, str], torch_missing: bool, install_lungai: bool,
              missing: tuple[str, ...]) -> None:
    versions = {name: deps.LUNGAI_VERSION if version == "same" else version for name, version in installed.items()}
    requirements = ["numpy<3,>=1.26", "SimpleITK<3,>=2.3", 'tomli; python_version < "3.11"']
    plan = deps.plan_setup(versions.get, requires=lambda name: requirements)
    assert (plan.torch_missing, plan.install_lungai, plan.dependencies_missing) == (torch_missing, install_lungai,
                                                                                   missing)
    assert plan.needed == (torch_missing or install_lungai or bool(missing))


def test_the_installed_lungai_needs_nothing_here(deps: ModuleType) -> None:
    plan = deps.plan_setup()
    assert plan.lungai_installed == deps.LUNGAI_VERSION and plan.dependencies_missing == ()


def test_the_confirmation_text_names_what_is_installed(deps: ModuleType) -> None:
    text = deps.SetupPlan(torch_missing=True, lungai_installed="0.0.9").describe()
    assert "PyTorch, through the PyTorch extension" in text
    assert f"lungai {deps.LUNGAI_VERSION} (replacing 0.0.9)" in text
    assert "SimpleITK" in text and text.endswith("Install now?")
    assert "PyTorch" not in deps.SetupPlan(torch_missing=False, lungai_installed=None).describe().split("\n")[1]
    only_packages = deps.SetupPlan(torch_missing=False, lungai_installed=deps.LUNGAI_VERSION,
                                   dependencies_missing=("slicerio", "click")).describe()
    assert only_packages.split("\n")[1] == "- Python packages lungai needs: slicerio, click"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def pip(self, arguments: list[str]) -> None:
        self.calls.append(("pip", arguments))

    def install_torch(self, requirement: str) -> None:
        self.calls.append(("torch", requirement))


def test_setup_installs_torch_then_lungai_then_its_dependencies(deps: ModuleType, tmp_path: Path) -> None:
    recorder = Recorder()
    versions = {"numpy": "1.26.4", "torch": "2.5.1"}
    restart = deps.run_setup(
        deps.SetupPlan(torch_missing=True, lungai_installed=None), pip=recorder.pip,
        install_torch=recorder.install_torch, constraints_folder=tmp_path, version_of=versions.get,
        requires=lambda name: ["numpy<3,>=1.26", "SimpleITK<3,>=2.3", "torch<2.15,>=2.2", "scipy<2,>=1.11",
                               'pytest<10,>=8; extra == "test"'],
        imported={})
    constraints = tmp_path / "lungai-constraints.txt"
    assert recorder.calls == [
        ("torch", deps.TORCH_REQUIREMENT),
        ("pip", ["--no-deps", f"lungai=={deps.LUNGAI_VERSION}"]),
        ("pip", ["--constraint", str(constraints), "numpy<3,>=1.26", "scipy<2,>=1.11"]),
    ]
    assert constraints.read_text() == "numpy==1.26.4\ntorch==2.5.1\n"
    assert restart is False


def test_setup_with_torch_present_only_installs_lungai(deps: ModuleType, tmp_path: Path) -> None:
    recorder = Recorder()
    deps.run_setup(deps.SetupPlan(torch_missing=False, lungai_installed=None), pip=recorder.pip,
                   install_torch=recorder.install_torch, constraints_folder=tmp_path, version_of={}.get,
                   requires=lambda name: [], imported={})
    assert recorder.calls == [("pip", ["--no-deps", f"lungai=={deps.LUNGAI_VERSION}"])]


def test_setup_of_missing_dependencies_keeps_the_installed_lungai(deps: ModuleType, tmp_path: Path) -> None:
    recorder = Recorder()
    plan = deps.SetupPlan(torch_missing=False, lungai_installed=deps.LUNGAI_VERSION, dependencies_missing=("scipy",))
    restart = deps.run_setup(plan, pip=recorder.pip, install_torch=recorder.install_torch,
                             constraints_folder=tmp_path, version_of={}.get,
                             requires=lambda name: ["scipy<2,>=1.11"], imported={"lungai": object()})
    assert recorder.calls == [("pip", ["--constraint", str(tmp_path / "lungai-constraints.txt"), "scipy<2,>=1.11"])]
    assert restart is False


@pytest.mark.parametrize(("installed", "imported", "restart"), [
    ("0.0.9", {"lungai": object()}, True),
    ("0.0.9", {}, False),
    (None, {"lungai": object()}, False),
])
def test_a_restart_is_needed_when_an_older_lungai_was_imported(
        deps: ModuleType, tmp_path: Path, installed: str | None, imported: dict[str, object], restart: bool) -> None:
    recorder = Recorder()
    assert deps.run_setup(deps.SetupPlan(torch_missing=False, lungai_installed=installed), pip=recorder.pip,
                          install_torch=recorder.install_torch, constraints_folder=tmp_path,
                          version_of={}.get, requires=lambda name: [], imported=imported) is restart


def test_nothing_to_do(deps: ModuleType, tmp_path: Path) -> None:
    recorder = Recorder()
    plan = deps.SetupPlan(torch_missing=False, lungai_installed=deps.LUNGAI_VERSION)
    assert not plan.needed
    assert deps.run_setup(plan, pip=recorder.pip, install_torch=recorder.install_torch,
                          constraints_folder=tmp_path, imported={}) is False
    assert recorder.calls == []


def test_missing_metadata_after_install_is_reported(deps: ModuleType) -> None:
    with pytest.raises(RuntimeError, match="was not installed"):
        deps.installed_requirements("surely-not-an-installed-distribution")
    assert deps.installed_version("surely-not-an-installed-distribution") is None
    assert deps.installed_version("numpy") == importlib.metadata.version("numpy")
