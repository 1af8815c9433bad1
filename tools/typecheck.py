"""Type-check the installed package layout with mypy (``python tools/typecheck.py``).

The source folders map to ``lungai`` subpackages through ``package-dir`` (``core/`` -> ``lungai``,
``cli/`` -> ``lungai.cli``, ...), and mypy does not follow the editable install's import hook. So
this links the folders into a temporary ``lungai`` tree and runs ``mypy -p lungai`` there with the
settings of ``pyproject.toml`` ([tool.mypy]). Exit status: mypy's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Source folder -> its place in the ``lungai`` package (pyproject's package-dir).
LAYOUT = {"cli": "cli", "slicer_module": "slicer", "weights": "weights"}


def link_tree(root: Path) -> Path:
    """A ``lungai`` package under ``root`` made of links to the source folders."""
    package = root / "lungai"
    package.mkdir()
    for entry in (REPO / "core").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for folder, name in LAYOUT.items():
        (package / name).symlink_to(REPO / folder)
    return package


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        link_tree(Path(tmp))
        command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                   "--cache-dir", str(REPO / ".mypy_cache"), "-p", "lungai"]
        return subprocess.run(command, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
