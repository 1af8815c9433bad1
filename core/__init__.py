"""LungAI: lung CT analysis (lungs, nodules and masses, malignancy, emphysema).

The library behind the ``lungai`` command line and the 3D Slicer module. No Qt and no
Slicer imports live here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lungai")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
