"""Setting up LungAI's Python dependencies inside 3D Slicer, without breaking Slicer.

This lives in the extension, not in ``lungai``, because it must run before ``lungai`` is
installed. The order:

1. torch through the PyTorch extension's ``PyTorchUtils``, which picks a CUDA build when
   the machine has an NVIDIA GPU and a CPU build otherwise;
2. ``lungai`` pinned to this module's version, without its dependencies;
3. lungai's dependencies, except those Slicer or the PyTorch extension provide (SimpleITK,
   torch), with the installed versions of Slicer's compiled packages pinned, so pip never
   replaces Slicer's SimpleITK or numpy. This step also runs when lungai is there but some
   of its dependencies are not (a developer's ``pip install --no-deps -e``).

Slicer calls are injected (``pip``, ``install_torch``, ``requires``), so this module has no
Qt or Slicer imports and is tested with plain pytest.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import sys
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: The lungai release this module is made for (``version`` in pyproject.toml).
LUNGAI_VERSION = "0.1.0"

#: torch versions lungai supports (the ``torch`` requirement in pyproject.toml).
TORCH_REQUIREMENT = ">=2.2,<2.15"

#: Requirements never installed by pip here: Slicer ships SimpleITK, PyTorchUtils installs torch.
PROVIDED = ("simpleitk", "torch", "torchvision")

#: Packages whose installed version is pinned while installing lungai's dependencies.
PINNED = ("simpleitk", "numpy", "torch", "torchvision")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form (``SimpleITK`` -> ``simpleitk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, or ``None`` if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_requirements(name: str) -> list[str]:
    """The requirements declared by an installed distribution (re-reading the disk).

    Raises:
        RuntimeError: the distribution is not installed.
    """
    importlib.invalidate_caches()
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise RuntimeError(f"{name} was not installed; see the Python console for pip's messages") from error


def requirement_name(requirement: str) -> str | None:
    """The normalized distribution name of a requirement string, ``None`` if there is none."""
    match = _NAME.match(requirement)
    return None if match is None else normalize(match.group(1))


def dependency_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirements to pass to pip: no extras, nothing in :data:`PROVIDED`.

    Args:
        requirements: requirement strings as in package metadata, e.g.
            ``'numpy<3,>=1.26'`` or ``'pytest<10,>=8; extra == "test"'``.

    Returns:
        The requirements kept, unchanged, in their order.
    """
    kept = []
    for requirement in requirements:
        name = requirement_name(requirement)
        if name is None or name in PROVIDED or _EXTRA_MARKER.search(requirement.partition(";")[2]):
            continue
        kept.append(requirement)
    return kept


def missing_requirements(requirements: Iterable[str], version_of: Callable[[str], str | None]) -> tuple[str, ...]:
    """The names of the requirements that are not installed at all.

    Requirements with an environment marker are not checked (they may not apply here).

    Args:
        requirements: as returned by :func:`dependency_requirements`.
        version_of: returns a distribution's installed version or ``None``.
    """
    names = [requirement_name(requirement) for requirement in requirements if ";" not in requirement]
    return tuple(name for name in names if name is not None and version_of(name) is None)


def pin_constraints(version_of: Callable[[str], str | None]) -> list[str]:
    """``name==version`` lines for the installed packages of :data:`PINNED`.

    Args:
        version_of: returns a distribution's installed version or ``None``.
    """
    pins = []
    for name in PINNED:
        version = version_of(name)
        if version is not None:
            pins.append(f"{name}=={version}")
    return pins


@dataclass(frozen=True)
class SetupPlan:
    """What the set-up has to install.

    Attributes:
        torch_missing: torch is not installed.
        lungai_installed: the installed lungai version, ``None`` if none.
        lungai_wanted: the version this module needs.
        dependencies_missing: names of the installed lungai's dependencies that are not installed.
    """

    torch_missing: bool
    lungai_installed: str | None
    lungai_wanted: str = LUNGAI_VERSION
    dependencies_missing: tuple[str, ...] = ()

    @property
    def install_lungai(self) -> bool:
        """Whether lungai has to be installed or replaced."""
        return self.lungai_installed != self.lungai_wanted

    @property
    def install_dependencies(self) -> bool:
        """Whether lungai's dependencies have to be installed."""
        return self.install_lungai or bool(self.dependencies_missing)

    @property
    def needed(self) -> bool:
        """Whether anything has to be installed."""
        return self.torch_missing or self.install_dependencies

    def describe(self) -> str:
        """The text of the confirmation dialog."""
        steps = []
        if self.torch_missing:
            steps.append("PyTorch, through the PyTorch extension (a GPU build if this computer has an "
                         "NVIDIA GPU; this download can take several minutes and a few GB)")
        if self.install_lungai:
            current = f" (replacing {self.lungai_installed})" if self.lungai_installed else ""
            steps.append(f"lungai {self.lungai_wanted}{current} and the Python packages it needs")
        elif self.dependencies_missing:
            steps.append(f"Python packages lungai needs: {', '.join(self.dependencies_missing)}")
        items = "\n".join(f"- {step}" for step in steps)
        return (f"LungAI needs to install:\n{items}\n\nSlicer's own packages (SimpleITK, numpy) "
                "are left as they are. Install now?")


def plan_setup(version_of: Callable[[str], str | None] = installed_version,
               requires: Callable[[str], list[str]] = installed_requirements) -> SetupPlan:
    """Find out what is missing.

    Args:
        version_of: returns a distribution's installed version or ``None``.
        requires: returns an installed distribution's requirements.
    """
    lungai = version_of("lungai")
    missing = (missing_requirements(dependency_requirements(requires("lungai")), version_of)
               if lungai == LUNGAI_VERSION else ())
    return SetupPlan(torch_missing=version_of("torch") is None, lungai_installed=lungai,
                     dependencies_missing=missing)


def run_setup(plan: SetupPlan, *, pip: Callable[[list[str]], None], install_torch: Callable[[str], None],
              constraints_folder: Path, version_of: Callable[[str], str | None] = installed_version,
              requires: Callable[[str], list[str]] = installed_requirements,
              imported: Container[str] = sys.modules) -> bool:
    """Install what ``plan`` lists.

    Args:
        plan: from :func:`plan_setup`.
        pip: runs ``pip install`` with the given arguments (``slicer.util.pip_install``).
        install_torch: installs torch matching a version requirement (through PyTorchUtils).
        constraints_folder: an existing folder for the pip constraints file.
        version_of: returns a distribution's installed version or ``None``.
        requires: returns an installed distribution's requirements.
        imported: names of the modules imported in this Python (``sys.modules``).

    Returns:
        Whether Slicer must restart: a different lungai was already imported.
    """
    if plan.torch_missing:
        logger.info("installing torch%s through PyTorchUtils", TORCH_REQUIREMENT)
        install_torch(TORCH_REQUIREMENT)
    if plan.install_lungai:
        logger.info("installing lungai %s", plan.lungai_wanted)
        pip(["--no-deps", f"lungai=={plan.lungai_wanted}"])
    if not plan.install_dependencies:
        return False
    requirements = dependency_requirements(requires("lungai"))
    if requirements:
        constraints = Path(constraints_folder) / "lungai-constraints.txt"
        constraints.write_text("\n".join(pin_constraints(version_of)) + "\n", encoding="utf-8")
        pip(["--constraint", str(constraints), *requirements])
    return plan.install_lungai and plan.lungai_installed is not None and "lungai" in imported
