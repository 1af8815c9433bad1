"""The package-top Python API: ``lungai.run``, ``lungai.load_models``, ``lungai.read_findings``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

import lungai
from lungai.data.phantom import make_phantom
from lungai.errors import LungAIError, OutputExistsError
from lungai.io.findings import Findings


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "phantom.nrrd"
    sitk.WriteImage(make_phantom().image, str(path), True)
    return path


def test_import_lungai_does_not_import_torch() -> None:
    code = "import sys, lungai; assert 'run' in lungai.__all__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_run_writes_the_outputs_and_read_findings_reads_them_back(phantom: Path, tmp_path: Path) -> None:
    events = []
    result = lungai.run(phantom, tmp_path / "out", tasks="lungs", device="cpu", on_progress=events.append)
    assert result.output == tmp_path / "out"
    assert (result.output / "findings.json").is_file()
    assert {e.event for e in events} >= {"start", "done"}
    read = lungai.read_findings(result.output)
    assert isinstance(read, Findings)
    assert read.lungs["total"].volume_ml == pytest.approx(result.findings.lungs["total"].volume_ml)
    assert read.lungs["total"].volume_ml > 1000  # the phantom's lungs: litres, not a sliver


def test_run_keeps_the_command_line_errors(phantom: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(OutputExistsError):
        lungai.run(phantom, tmp_path / "taken", tasks="lungs", device="cpu")
    with pytest.raises(LungAIError):
        lungai.run(tmp_path / "missing.nrrd", tmp_path / "out", tasks="lungs", device="cpu")
    with pytest.raises(TypeError):
        lungai.run(phantom, tmp_path / "out2", tasks="lungs", colour="blue")
    with pytest.raises(AttributeError, match="no attribute 'walk'"):
        lungai.walk  # noqa: B018


def test_one_model_store_serves_many_runs(phantom: Path, tmp_path: Path) -> None:
    store = lungai.load_models(device="cpu")
    assert store.device == "cpu"
    for name in ("a", "b"):
        lungai.run(phantom, tmp_path / name, tasks="lungs", models=store)
    assert lungai.read_findings(tmp_path / "b" / "findings.json").lungs.keys() == {"right", "left", "total"}
