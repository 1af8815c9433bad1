"""Reading ``weights/manifest.json``, the list of shipped model weights and their checksums."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load_manifest() -> dict[str, Any]:
    """The bundled manifest as a dict (``{"manifest_version": 1, "models": [...]}``)."""
    text = resources.files("lungai.weights").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)
