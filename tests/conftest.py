"""Shared fixtures: where the real test data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import data_root_path


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real de-identified CT data (``../shared/data`` or ``$LUNGAI_TEST_DATA``)."""
    root = data_root_path()
    if not root.is_dir():
        pytest.skip(f"real CT test data not found at {root} (set LUNGAI_TEST_DATA to its folder)")
    return root
