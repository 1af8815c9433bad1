"""The distribution's package list matches the folders on disk, and the install is usable."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from shared_data import REPO_ROOT


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _folder_packages() -> set[str]:
    """Import names of every folder holding Python files under the mapped roots."""
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    found: set[str] = set()
    for import_name, folder in mapping.items():
        root = REPO_ROOT / folder
        for path in root.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.parent.relative_to(root).parts
            found.add(".".join((import_name, *relative)))
    return found


def test_every_package_folder_is_listed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    missing = _folder_packages() - listed
    assert not missing, f"package folders missing from pyproject's packages list: {sorted(missing)}"


def test_every_listed_package_has_an_init() -> None:
    config = _pyproject()["tool"]["setuptools"]
    for package in config["packages"]:
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in config["package-dir"]:
                folder = REPO_ROOT / config["package-dir"][prefix] / Path(*parts[cut:])
                break
        assert (folder / "__init__.py").is_file(), f"{package}: no __init__.py in {folder}"


def test_torch_is_pinned_with_torchvision() -> None:
    pins = {line.split("==")[0]: line.split("==")[1] for line in
            (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#")}
    assert {"torch", "torchvision"} <= set(pins)


def test_console_script_and_module_entry_agree() -> None:
    result = subprocess.run([sys.executable, "-m", "lungai.cli", "--version"], capture_output=True, text=True,
                            check=True)
    from lungai import __version__

    assert result.stdout.strip() == f"lungai, version {__version__}"
    assert _pyproject()["project"]["scripts"]["lungai"] == "lungai.cli.main:main"
