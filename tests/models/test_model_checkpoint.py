"""config.json + model.safetensors checkpoints: round trips and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lungai.errors import WeightsError
from lungai.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, read_header, save_model
from lungai.models.convlstm_nodule import ConvLSTMNoduleConfig
from lungai.models.registry import build_model


def test_writes_exactly_the_two_files(tmp_path: Path) -> None:
    save_model(build_model("nodule_cnn2d"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    header = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert header["architecture"] == "NoduleCNN2d"
    assert header["config"]["filters"] == [32, 64, 64]
    assert "features.1.running_mean" in load_file(str(tmp_path / WEIGHTS_FILE))


def test_non_default_config_round_trips_with_tuples(tmp_path: Path) -> None:
    config = ConvLSTMNoduleConfig(lstm_filters=(4, 6), conv_filters=3, peephole=True, gate_norm=True, crop=(1, 1, 1))
    model = build_model("convlstm_nodule", config).eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == config
    assert isinstance(loaded.config.lstm_filters, tuple)
    x = torch.randn(1, 1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not loaded.training


def test_missing_folder_or_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="config.json"):
        load_model(tmp_path)
    save_model(build_model("nodule_cnn2d"), tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_model(tmp_path)


def test_corrupt_weights(tmp_path: Path) -> None:
    save_model(build_model("nodule_cnn2d"), tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    save_model(build_model("nodule_cnn2d"), tmp_path)
    header = json.loads((tmp_path / CONFIG_FILE).read_text())
    header["config"]["hidden"] = 64
    (tmp_path / CONFIG_FILE).write_text(json.dumps(header))
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(tmp_path)


def test_unknown_architecture_field_or_format(tmp_path: Path) -> None:
    save_model(build_model("nodule_cnn2d"), tmp_path)
    path = tmp_path / CONFIG_FILE
    header = json.loads(path.read_text())
    for broken, message in (
        ({**header, "architecture": "UNet"}, "unknown architecture"),
        ({**header, "config": {**header["config"], "depth": 3}}, "unknown fields"),
        ({**header, "format": "pickle"}, "not a LungAI model"),
        ({**header, "format_version": 99}, "newer"),
    ):
        path.write_text(json.dumps(broken))
        with pytest.raises(WeightsError, match=message):
            load_model(tmp_path)
    path.write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        read_header(tmp_path)
