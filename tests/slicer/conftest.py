"""Fixtures of the Slicer tests: an empty MRML scene from ``slicer-core``."""

from __future__ import annotations

from typing import Any

import pytest
from mrml_helpers import SLICER_CORE_MISSING


@pytest.fixture
def scene() -> Any:
    """An empty ``vtkMRMLScene``; skips when slicer-core is not installed."""
    slicer = pytest.importorskip("slicer", reason=SLICER_CORE_MISSING)
    return slicer.vtkMRMLScene()
