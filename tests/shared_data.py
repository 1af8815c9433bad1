"""Where the real test data lives (``../shared/data`` or ``$LUNGAI_TEST_DATA``), for tests to import.

Kept out of ``conftest.py`` because several folders have their own ``conftest`` module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root_path() -> Path:
    """The configured data folder (it may not exist)."""
    env = os.environ.get("LUNGAI_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def require(path: Path) -> Path:
    """Return ``path`` or skip the test, naming the missing file."""
    if not path.exists():
        pytest.skip(f"test data file missing: {path}")
    return path
