"""``lungai train-detection``: train the detection classifier and choose its operating points."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("train-detection")
@click.option("--data-root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="The shared data folder (lidc_vois/, backgrounds/, lung_pet_ct_dx/).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/detection/convlstm_nodule"),
              show_default=True, help="Run folder; an existing run there is resumed.")
@click.option("--epochs", type=int, default=12, show_default=True)
@click.option("--steps-per-epoch", type=int, default=60, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for torch.")
@click.option("--calibration-scans", type=int, default=6, show_default=True,
              help="Validation inserted-nodule scans the operating points are chosen on (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True)
def train_detection(data_root: Path, out: Path, epochs: int, steps_per_epoch: int, threads: int,
                    calibration_scans: int, seed: int) -> None:
    """Train convlstm_nodule as the false-positive classifier on inserted nodules and real lung tissue.

    Writes config.json + model.safetensors + metrics.json in --out (best validation AUC),
    then operating_points.json chosen on validation inserted-nodule scans.
    """
    import torch

    from lungai.data.detection_dataset import DetectionDataConfig, RoiSet, build_roi_set
    from lungai.data.lesion_insertion import BACKGROUND_NAMES, load_background
    from lungai.data.lidc_vois import list_vois
    from lungai.data.splits import cases_for_split, load_split
    from lungai.training.detection_trainer import DetectionTrainConfig, train_detection as run

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    backgrounds: list = []
    cases = list_vois(data_root / "lidc_vois").cases
    split = load_split()
    sets = {}
    for part in ("train", "val"):
        cache = out / f"rois_{part}.npz"
        if not cache.exists():
            backgrounds = backgrounds or [load_background(name, data_root) for name in BACKGROUND_NAMES]
            build_roi_set(cases_for_split(cases, split, part), backgrounds, part,
                          DetectionDataConfig(seed=seed, insertions_per_nodule=3 if part == "train" else 1)).save(cache)
        sets[part] = RoiSet.load(cache)
    metrics = run(DetectionTrainConfig(out=out, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed,
                                       threads=threads), sets["train"], sets["val"])
    click.echo(f"best validation AUC {metrics['validation']['auc']:.4f} at epoch {metrics['best_epoch']}; saved in {out}")
    if calibration_scans:
        backgrounds = backgrounds or [load_background(name, data_root) for name in BACKGROUND_NAMES]
        _calibrate(data_root, out, backgrounds, calibration_scans, seed)


def _calibrate(data_root: Path, out: Path, backgrounds: list, num_scans: int, seed: int) -> None:
    """Choose the operating points (with and without the classifier) on validation inserted scans."""
    from lungai.evaluation.detection_eval import (OPERATING_TARGETS, at_threshold, choose_operating_points,
                                                  detect_in, inserted_cases, summarize)
    from lungai.models.checkpoint import load_model

    cases = inserted_cases(data_root, "val", num_scans, seed=seed, backgrounds=backgrounds)
    lungs: dict = {}
    payload: dict = {}
    for key, model in (("classifier", load_model(out)), ("candidates_only", None)):
        detections = detect_in(cases, model, lung_cache=lungs)
        summary = summarize(cases, detections, with_classifier=model is not None)
        thresholds = choose_operating_points(summary["_result"])
        payload[key] = {"cpm": summary["cpm"], "sensitivity_at_fp": summary["sensitivity_at_fp"],
                        "candidate_sensitivity": summary["candidate_sensitivity"],
                        "operating_points": {name: {**at_threshold(detections, cases, t),
                                                    "target_fp_per_scan": OPERATING_TARGETS[name]}
                                             for name, t in thresholds.items()}}
        for name, p in payload[key]["operating_points"].items():
            click.echo(f"{key} {name}: threshold {p['threshold']:.4f}, {p['fp_per_scan']:.2f} FP/scan, "
                       f"sensitivity {p['sensitivity']:.2f} on validation")
    payload["data"] = (f"{len(cases)} validation inserted-nodule scans "
                       f"({sum(len(c.nodules) for c in cases)} validation-split VOIs), seed {seed}")
    (out / "operating_points.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
