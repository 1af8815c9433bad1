"""Fixtures of the output-writer tests: a 20-slice real DICOM series with synthetic lesions."""

from __future__ import annotations

from pathlib import Path

import pytest
from outputs_cases import LIDC_0001_ZIP, Case, build_case, extract_slices
from shared_data import require


@pytest.fixture(scope="session")
def lidc20_folder(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 consecutive real slices from the middle of LIDC-IDRI-0001, as a DICOM folder."""
    return extract_slices(require(data_root / LIDC_0001_ZIP), tmp_path_factory.mktemp("lidc20") / "dicom", 20)


@pytest.fixture(scope="session")
def lidc20_case(lidc20_folder: Path) -> Case:
    """That series read by LungAI, with two nodules and a tumour placed in its lungs."""
    return build_case(lidc20_folder)
