"""Training on a few real VOIs: runs, resumes from its checkpoint, and repeats bit for bit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file
from shared_data import require

from lungai.errors import WeightsError
from lungai.models.checkpoint import load_model
from lungai.training.recipes import make_config
from lungai.training.trainer import TrainEvent, _make_datasets, _split_cases, train

TINY_CNN = {"filters": (4, 8, 8), "hidden": 16}
TINY_UNET = {"filters": (2, 4, 8, 16), "bottom_filters": 16}

pytestmark = pytest.mark.slow


class _Interrupt(Exception):
    pass


def _config(data: Path, out: Path, model: str = "nodule_cnn2d", task: str = "malignancy", **extra: object):
    model_config = TINY_CNN if model == "nodule_cnn2d" else TINY_UNET
    settings: dict[str, object] = {"epochs": 2, "batch_size": 4, "max_cases": 8, "num_threads": 1,
                                   "model_config": model_config, **extra}
    return make_config(task, model, data, out, **settings)


@pytest.fixture(scope="module")
def vois(data_root: Path) -> Path:
    return require(data_root / "lidc_vois" / "nodules.csv").parent


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "last" / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_two_epochs_write_checkpoint_metrics_and_log(vois: Path, tmp_path: Path) -> None:
    result = train(_config(vois, tmp_path / "run"))
    run = tmp_path / "run"
    assert result.epochs_run == 2
    for name in ("config.json", "model.safetensors", "metrics.json", "train.log", "last/optimizer.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and "val_auc" in metrics["history"][0]
    assert load_model(run).config.filters == (4, 8, 8)


def test_rerun_with_same_seed_is_bit_identical(vois: Path, tmp_path: Path) -> None:
    train(_config(vois, tmp_path / "a"))
    train(_config(vois, tmp_path / "b"))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_resume_after_interruption_matches_uninterrupted_run(vois: Path, tmp_path: Path) -> None:
    def stop_after_first_epoch(event: TrainEvent) -> None:
        if event.kind == "epoch" and event.epoch == 0:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(_config(vois, tmp_path / "resumed"), on_event=stop_after_first_epoch)
    assert json.loads((tmp_path / "resumed" / "last" / "state.json").read_text())["trainer"]["epoch"] == 1
    result = train(_config(vois, tmp_path / "resumed"))
    train(_config(vois, tmp_path / "straight"))
    assert result.epochs_run == 2
    assert _same(_weights(tmp_path / "resumed"), _weights(tmp_path / "straight"))
    optim_a = load_file(str(tmp_path / "resumed" / "last" / "optimizer.safetensors"))
    optim_b = load_file(str(tmp_path / "straight" / "last" / "optimizer.safetensors"))
    assert _same(optim_a, optim_b)


def test_a_run_is_not_resumed_with_other_settings_but_may_get_more_epochs(vois: Path, tmp_path: Path) -> None:
    train(_config(vois, tmp_path / "run", epochs=1))
    with pytest.raises(WeightsError, match=r"other settings \(lr 0.001 -> 0.01, seed 0 -> 3\).*--restart"):
        train(_config(vois, tmp_path / "run", epochs=2, lr=1e-2, seed=3))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 1  # untouched
    result = train(_config(vois, tmp_path / "run", epochs=2, num_threads=2))  # a longer budget, more threads
    assert result.epochs_run == 2
    assert train(_config(vois, tmp_path / "run", epochs=2, lr=1e-2), resume=False).epochs_run == 2  # --restart


def test_segmentation_training_runs(vois: Path, tmp_path: Path) -> None:
    result = train(_config(vois, tmp_path / "seg", model="resunet3d", task="nodule-seg"))
    metrics = json.loads((tmp_path / "seg" / "metrics.json").read_text())
    assert result.epochs_run == 2 and 0.0 <= metrics["history"][-1]["val_dice"] <= 1.0
    inference = json.loads((tmp_path / "seg" / "config.json").read_text())["inference"]
    assert inference["threshold"] == metrics["val_threshold"] and 0.0 < inference["threshold"] < 1.0
    assert inference["roi_shape_zyx"] == [16, 48, 48]
    assert load_model(tmp_path / "seg").config.filters == (2, 4, 8, 16)


def test_shift_fraction_is_checked_and_recorded(vois: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shift_fraction"):
        _config(vois, tmp_path / "bad", model="resunet3d", task="nodule-seg", shift_fraction=0.6)
    config = _config(vois, tmp_path / "seg", model="resunet3d", task="nodule-seg", epochs=1, shift_fraction=0.3)
    assert _make_datasets(config, _split_cases(config))[0].augment.shift_fraction == 0.3
    train(config)
    assert json.loads((tmp_path / "seg" / "metrics.json").read_text())["config"]["shift_fraction"] == 0.3


def test_whole_scan_negatives_join_segmentation_training(vois: Path, data_root: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    thorax = str(require(data_root / "cip_small" / "ct-64.nrrd")) + ":left"
    with pytest.raises(ValueError, match="nodule-seg"):
        _config(vois, tmp_path / "bad", negative_scans=[thorax])
    config = _config(vois, tmp_path / "seg", model="resunet3d", task="nodule-seg", epochs=1, negative_scans=[thorax],
                     negatives_per_scan=4)
    with caplog.at_level("INFO", logger="lungai"):
        train(config)
    assert any("8 train / 8 val cases and 4 negative ROIs" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "seg" / "metrics.json").read_text())["config"]["negative_scans"] == [thorax]


def test_min_diameter_selects_the_large_nodules(vois: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config("nodule-seg", "r3d_denseunet", vois, tmp_path / "big", epochs=1, batch_size=4, num_threads=1,
                         min_diameter_mm=20.0, model_config={"encoder_filters": (2, 4, 8), "bottleneck_filters": 8,
                                                             "bottleneck_layers": 1})
    with caplog.at_level("INFO", logger="lungai"):
        train(config)
    found = [re.search(r"(\d+) train / (\d+) val", r.getMessage()) for r in caplog.records]
    train_n, val_n = next((int(m[1]), int(m[2])) for m in found if m)
    assert 0 < train_n < 40 and 0 < val_n < 10  # of 537 / 121: only nodules of 20 mm and more
    assert json.loads((tmp_path / "big" / "config.json").read_text())["inference"]["min_diameter_mm"] == 20.0


def test_model_of_the_wrong_task_is_refused(vois: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malignancy model"):
        make_config("nodule-seg", "nodule_cnn2d", vois, tmp_path)


def test_init_weights_starts_a_new_run_from_a_checkpoint(vois: Path, tmp_path: Path) -> None:
    train(_config(vois, tmp_path / "first", epochs=1))
    # lr 0: the optimiser never moves a parameter, so every parameter must still be the checkpoint's
    result = train(_config(vois, tmp_path / "tuned", epochs=1, lr=0.0, init_weights=tmp_path / "first"))
    assert result.epochs_run == 1
    start, tuned = load_model(tmp_path / "first"), load_model(tmp_path / "tuned")
    fresh = train(_config(vois, tmp_path / "fresh", epochs=1, lr=0.0))
    assert fresh.epochs_run == 1
    for (name, a), (_, b), (_, c) in zip(start.named_parameters(), tuned.named_parameters(),
                                         load_model(tmp_path / "fresh").named_parameters()):
        assert a.equal(b), name
    assert not all(a.equal(c) for a, c in zip(start.parameters(), load_model(tmp_path / "fresh").parameters()))


def test_init_weights_of_other_widths_are_refused(vois: Path, tmp_path: Path) -> None:
    train(_config(vois, tmp_path / "first", epochs=1))
    wider = _config(vois, tmp_path / "wider", epochs=1, init_weights=tmp_path / "first")
    wider.model_config = {"filters": (8, 8, 8), "hidden": 16}
    with pytest.raises(WeightsError, match="other layer widths"):
        train(wider)
