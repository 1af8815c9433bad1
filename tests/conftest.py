"""Shared fixtures: where the real test data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("LUNGAI_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real de-identified CT data (``../shared/data`` or ``$LUNGAI_TEST_DATA``)."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"real CT test data not found at {root} (set LUNGAI_TEST_DATA to its folder)")
    return root


def require(path: Path) -> Path:
    """Return ``path`` or skip the test, naming the missing file."""
    if not path.exists():
        pytest.skip(f"test data file missing: {path}")
    return path
