"""The code's own checks, run with the tests: ruff (lint and import order), mypy, and no bare ``type: ignore``.

The same commands run before each commit with pre-commit (``.pre-commit-config.yaml``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("core", "cli", "slicer_module", "weights")
#: ``# type: ignore[code]  # reason``: an error code and a reason after it.
EXPLAINED_IGNORE = re.compile(r"# type: ignore\[[a-z-]+(, [a-z-]+)*\]  # \S")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_ruff_is_clean():
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    result = _run(sys.executable, "tools/typecheck.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_type_ignore_has_a_code_and_a_reason():
    bare = [f"{path.relative_to(REPO)}:{number}" for folder in SOURCES for path in (REPO / folder).rglob("*.py")
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if "# type: ignore" in line and not EXPLAINED_IGNORE.search(line)]
    assert bare == []


def test_the_ignore_rule_rejects_a_bare_ignore():
    assert EXPLAINED_IGNORE.search("x = f()  # type: ignore[arg-type]  # the stub is wrong")
    assert not EXPLAINED_IGNORE.search("x = f()  # type: ignore[arg-type]")
    assert not EXPLAINED_IGNORE.search("x = f()  # type: ignore")
