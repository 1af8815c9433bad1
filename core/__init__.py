"""LungAI: lung CT analysis (lungs, nodules and masses, malignancy, emphysema).

The library behind the ``lungai`` command line and the 3D Slicer module. No Qt and no
Slicer imports live here. The Python API is ``lungai.run``, ``lungai.load_models`` and
``lungai.read_findings`` (:mod:`lungai.api`), imported on first use so that ``import lungai``
stays light.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("lungai")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_models", "read_findings", "run"]

_API = ("load_models", "read_findings", "run")


def __getattr__(name: str) -> Any:
    """``lungai.run`` and the other API names, from :mod:`lungai.api` on first use."""
    if name in _API:
        return getattr(importlib.import_module("lungai.api"), name)
    raise AttributeError(f"module 'lungai' has no attribute {name!r}")
