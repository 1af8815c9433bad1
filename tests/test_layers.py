"""The package's layers, checked over the real import graph (DEVELOPERS.md, "Layers").

Every ``import lungai.x`` or ``from lungai.x import ...`` in the package's source, at module level
or inside a function, must point to the importing subpackage's own layer or one below it. An
exception would be listed in :data:`KNOWN_UPWARD` with its reason (there is none); the test fails
both for a new upward import and for a listed one that is gone.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Source folder -> the package name it installs as (pyproject's package-dir).
SOURCES = {"core": "lungai", "cli": "lungai.cli", "slicer_module": "lungai.slicer", "weights": "lungai.weights"}
#: Bottom up; a subpackage may import its own layer and those before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lungai", "errors", "labels"),
    ("io", "models"),
    ("weights",),
    ("preprocessing",),
    ("inference",),
    ("data",),
    ("pipeline",),
    ("followup",),
    ("evaluation",),
    ("training",),
    ("api", "baselines", "batch", "slicer"),
    ("cli",),
)
#: (importing module, imported module): upward imports not yet moved, and why they remain.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _rank(module: str) -> int:
    name = module.split(".")[1] if "." in module else module
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in SOURCES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _imports(path: Path, known: set[str]) -> set[str]:
    """The ``lungai`` modules a file imports (``from lungai import labels`` is ``lungai.labels``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "lungai"}
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] == "lungai"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return found


def _upward() -> set[tuple[str, str]]:
    modules = _modules()
    known = set(modules)
    return {(module, imported) for module, path in modules.items() for imported in _imports(path, known)
            if _rank(imported) > _rank(module)}


def test_every_subpackage_has_a_layer():
    names = {m.split(".")[1] for m in _modules() if "." in m}
    assert names <= {name for layer in LAYERS for name in layer}


def test_imports_point_down_the_layers():
    upward = _upward()
    assert upward - KNOWN_UPWARD == set(), "upward imports (move the code down, or see DEVELOPERS.md)"
    assert KNOWN_UPWARD - upward == set(), "these listed upward imports are gone: remove them from KNOWN_UPWARD"


def test_the_checker_sees_an_upward_import(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from lungai.pipeline.runner import run_pipeline\nimport lungai.training\n")
    imported = _imports(module, {"lungai.pipeline.runner"})
    assert imported == {"lungai.pipeline.runner", "lungai.training"}
    assert _rank("lungai.preprocessing.roi") < _rank("lungai.pipeline.runner") < _rank("lungai.training")
