"""Checks that run before any work, each failing with a one-line message and a fix.

Hard checks (not a 3D CT volume, unusable geometry, NaN) always apply. Soft checks
(the intensities do not look like Hounsfield units) raise :class:`SuspiciousInputError`,
which ``--force`` turns into a logged warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungai.errors import NotCTError, ResourceError, SuspiciousInputError

logger = logging.getLogger(__name__)

MIN_SLICES = 10
MIN_SPACING_MM = 0.2
MAX_SPACING_MM = 10.0
#: Peak bytes per voxel of the full pipeline (int16 image, label maps, float working copies).
BYTES_PER_VOXEL = 24


@dataclass(frozen=True)
class ImageHeader:
    """What is known about an image before its pixels are read."""

    size: Sequence[int]
    spacing: Sequence[float]
    components: int = 1

    @property
    def dimension(self) -> int:
        """Number of image axes."""
        return len(self.size)


def check_header(header: ImageHeader, source: str) -> None:
    """Hard geometry checks: 3D, scalar, enough slices, plausible spacing.

    Raises:
        NotCTError: when a check fails.
    """
    if header.components > 1:
        raise NotCTError(f"{source} is a colour/vector image ({header.components} components per voxel)",
                         "LungAI needs a greyscale CT volume in Hounsfield units")
    if header.dimension < 3 or (header.dimension == 3 and header.size[2] == 1):
        raise NotCTError(f"{source} is a 2D image", "give the whole CT series (a folder of slices or a 3D file)")
    if header.dimension > 3:
        raise NotCTError(f"{source} has {header.dimension} dimensions (a time series?)",
                         "give a single 3D CT volume")
    if header.size[2] < MIN_SLICES:
        raise NotCTError(f"{source} has only {header.size[2]} slices (at least {MIN_SLICES} needed)",
                         "give the whole CT series, not a few slices")
    bad = [s for s in header.spacing[:3] if not (MIN_SPACING_MM <= s <= MAX_SPACING_MM)]
    if bad:
        spacing = " x ".join(f"{s:g}" for s in header.spacing[:3])
        raise NotCTError(f"{source} has implausible voxel spacing {spacing} mm "
                         f"(expected {MIN_SPACING_MM}-{MAX_SPACING_MM} mm)",
                         "fix the spacing in the file header")


def available_memory_bytes() -> int | None:
    """Memory available to this process, from /proc/meminfo (None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(header: ImageHeader, source: str, available: int | None = None) -> None:
    """Refuse volumes whose processing would not fit in memory.

    Raises:
        ResourceError: with the needed and available sizes.
    """
    available = available_memory_bytes() if available is None else available
    voxels = int(np.prod(header.size, dtype=np.int64))
    needed = voxels * BYTES_PER_VOXEL
    if available is not None and needed > available:
        dims = "x".join(str(s) for s in header.size)
        raise ResourceError(f"{source} is too large: {dims} voxels need about {needed / 2**30:.1f} GB, "
                            f"{available / 2**30:.1f} GB available",
                            "crop the scan to the chest or resample it to thicker slices")


def check_finite(array: np.ndarray, source: str) -> None:
    """Refuse NaN or infinite intensities.

    Raises:
        NotCTError: when any voxel is not finite.
    """
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        count = int((~np.isfinite(array)).sum())
        raise NotCTError(f"{source} has {count} NaN or infinite voxels",
                         "re-export the scan; a CT volume holds finite Hounsfield units")


def check_hounsfield(array: np.ndarray, source: str, force: bool) -> list[str]:
    """Soft check that intensities are Hounsfield units: air near -1000, nothing absurd.

    Returns:
        Warnings (only when ``force`` turned a failure into a warning).

    Raises:
        SuspiciousInputError: when the check fails and ``force`` is false.
    """
    sample = array[:: max(1, array.shape[0] // 32)]
    low, high = np.percentile(sample, [1, 99.9])
    problem = None
    if low > -500:
        problem = (f"{source} does not look like Hounsfield units: no air below -500 "
                   f"(1st percentile {low:.0f}; unsigned raw values such as 0..4095?)")
    elif high > 10000:
        problem = f"{source} does not look like Hounsfield units (values up to {high:.0f})"
    if problem is None:
        return []
    if not force:
        raise SuspiciousInputError(problem, "apply the rescale slope/intercept, or pass --force to go on anyway")
    logger.warning("%s (continuing because of --force)", problem)
    return [problem]
