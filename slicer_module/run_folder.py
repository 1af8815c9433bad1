"""The files of one run started from Slicer: the exported scan and the output folder.

Each run gets its own folder under the module's working folder (in Slicer's temporary
folder). The exported scan is deleted once the run has ended; the outputs stay, so the
user can save the report later; a failed or cancelled run leaves nothing.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file name stem from a node name: letters, digits, ``.``, ``_`` and ``-`` only.

    Args:
        name: e.g. the input volume's name, ``"3: CT chest/abdomen"``.

    Returns:
        E.g. ``"3_CT_chest_abdomen"``; ``"scan"`` when nothing usable is left.
    """
    return _UNSAFE.sub("_", name).strip("._") or "scan"


class RunFolder:
    """The folder of one run.

    Args:
        root: the run's folder (it exists).
        stem: file name stem of the exported scan; the outputs are named after it.
    """

    def __init__(self, root: Path, stem: str) -> None:
        self.root = Path(root)
        self.stem = stem

    @classmethod
    def create(cls, parent: Path, volume_name: str) -> RunFolder:
        """Create a new, uniquely named run folder.

        Args:
            parent: the module's working folder; created if missing.
            volume_name: name of the volume to analyse.

        Returns:
            The run folder, with an empty ``input`` folder for the exported scan.
        """
        stem = safe_stem(volume_name)
        parent = Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-", dir=parent))
        (root / "input").mkdir()
        logger.debug("run folder %s", root)
        return cls(root, stem)

    @property
    def scan(self) -> Path:
        """Where the input volume is exported to (NRRD)."""
        return self.root / "input" / f"{self.stem}.nrrd"

    @property
    def output(self) -> Path:
        """The output folder the command line creates."""
        return self.root / "results"

    def remove_scan(self) -> None:
        """Delete the exported scan (the outputs stay)."""
        shutil.rmtree(self.scan.parent, ignore_errors=True)

    def discard(self) -> None:
        """Delete the whole run folder."""
        shutil.rmtree(self.root, ignore_errors=True)
        logger.debug("removed run folder %s", self.root)
