"""``run_pipeline(..., models=store)``: a loop over scans loads each model once and records what each run used."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_scans import write_phantom

import lungai.pipeline.model_store as models_module
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import model_store, run_pipeline


def test_a_loop_with_one_store_loads_each_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_load = models_module.load_model

    def counting_load(folder: Path, device: str):
        loads.append(str(folder))
        return real_load(folder, device)

    monkeypatch.setattr(models_module, "load_model", counting_load)
    scans = [write_phantom(tmp_path / f"scan{seed}.nrrd", seed=seed) for seed in range(3)]
    store = model_store(RunConfig(input=Path(), output=Path(), device="cpu"))
    for scan in scans:
        result = run_pipeline(RunConfig(input=scan, output=tmp_path / f"{scan.stem}_out", tasks=("lungs", "emphysema"),
                                        emphysema_probability=True), models=store)
        assert [w.name for w in result.findings.run.weights] == ["convlstm_scanner"]
    assert len(loads) == 1 and store.loaded == ("convlstm_scanner",)
    lungs_only = run_pipeline(RunConfig(input=scans[0], output=tmp_path / "lungs_only", tasks=("lungs",)), models=store)
    assert lungs_only.findings.run.weights == []  # loaded, but not used by this run
