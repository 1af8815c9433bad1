"""``lungai train detection``: train the detection classifier and choose its operating points; ``lungai train
detection-ensemble``: average trained ones into the shipped ensemble and choose its operating points.

Also ``lungai train-detection``, its name before ``lungai train`` had one subcommand per task.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from lungai.cli.group import TaskCommand
from lungai.cli.options import seed_option, threads_option


@click.command("detection", cls=TaskCommand, scope="the detection classifier",
               short_help="convlstm_nodule, the false-positive classifier of detection.")
@click.option("--data-root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="The shared data folder (lidc_vois/, backgrounds/, lung_pet_ct_dx/).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/detection/convlstm_nodule"),
              show_default=True, help="Run folder; an existing run there is resumed.")
@click.option("--epochs", type=int, default=12, show_default=True)
@click.option("--steps-per-epoch", type=int, default=60, show_default=True)
@threads_option(1)
@click.option("--calibration-scans", type=int, default=6, show_default=True,
              help="Validation inserted-nodule scans the operating points are chosen on (0: skip).")
@seed_option
@click.option("--filters", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Width of convlstm_nodule: conv and head filters, ConvLSTMs of this and twice this "
                   "(4: 12,751 parameters).")
@click.option("--texture-insertions", type=click.IntRange(1, 50), default=None,
              help="Times each non-solid or part-solid training VOI (nodules.csv Texture 1-3) is pasted "
                   "[default: 3, like the solid ones].")
@click.option("--texture-weight", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True,
              help="Sampling weight of non-solid and part-solid positives against solid ones.")
@click.option("--medial-negatives", type=click.IntRange(0), default=0, show_default=True,
              help="Extra negatives per background: soft-tissue lung voxels within 20 mm of the mediastinum "
                   "(hila, vessels, mediastinal border).")
@click.option("--pleural-fraction", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Share of the pasted training and validation nodules placed against the lung boundary "
                   "(juxtapleural: chest wall, mediastinum, diaphragm).")
def train_detection(data_root: Path, out: Path, epochs: int, steps_per_epoch: int, threads: int,
                    calibration_scans: int, seed: int, filters: int, texture_insertions: int | None,
                    texture_weight: float, medial_negatives: int, pleural_fraction: float) -> None:
    """Train convlstm_nodule as the false-positive classifier on inserted nodules and real lung tissue.

    Writes config.json + model.safetensors + metrics.json in --out (best validation AUC),
    then operating_points.json chosen on validation inserted-nodule scans. The texture rating
    only sets how often a VOI is pasted and drawn; it is never a model input.
    """
    from dataclasses import asdict

    import torch

    from lungai.data.detection_dataset import SUBSOLID, DetectionDataConfig, RoiSet, build_roi_set, texture_group
    from lungai.data.lesion_insertion import BACKGROUND_NAMES, load_background
    from lungai.data.lidc_vois import list_vois
    from lungai.data.splits import cases_for_split, load_split
    from lungai.training.detection_trainer import DetectionTrainConfig, model_of_width
    from lungai.training.detection_trainer import train_detection as run

    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    backgrounds: list = []
    cases = list_vois(data_root / "lidc_vois").cases
    split = load_split()
    sets, data_configs = {}, {}
    for part in ("train", "val"):
        data_config = DetectionDataConfig(seed=seed, insertions_per_nodule=3 if part == "train" else 1,
                                          texture_insertions=texture_insertions if part == "train" else None,
                                          medial_negatives=medial_negatives, pleural_fraction=pleural_fraction)
        data_configs[part] = asdict(data_config)
        cache, recorded = out / f"rois_{part}.npz", out / f"rois_{part}.json"
        # settings added since a run was made read as their defaults
        made = ({**asdict(DetectionDataConfig()), **json.loads(recorded.read_text(encoding="utf-8"))}
                if recorded.exists() else None)
        if cache.exists() and made is not None and made != data_configs[part]:
            raise click.UsageError(f"{cache} was made with other data settings ({recorded}); use another --out")
        if not cache.exists():
            backgrounds = backgrounds or [load_background(name, data_root) for name in BACKGROUND_NAMES]
            build_roi_set(cases_for_split(cases, split, part), backgrounds, part, data_config).save(cache)
            recorded.write_text(json.dumps(data_configs[part], indent=2) + "\n", encoding="utf-8")
        sets[part] = RoiSet.load(cache)
    subsolid = frozenset(c.case_id for c in cases if texture_group(c) in SUBSOLID)
    config = DetectionTrainConfig(out=out, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed, threads=threads,
                                  model_config=model_of_width(filters), texture_weight=texture_weight,
                                  data_config=data_configs)
    metrics = run(config, sets["train"], sets["val"], subsolid)
    click.echo(f"best validation AUC {metrics['validation']['auc']:.4f} at epoch {metrics['best_epoch']}; "
               f"saved in {out}")
    if calibration_scans:
        backgrounds = backgrounds or [load_background(name, data_root) for name in BACKGROUND_NAMES]
        _calibrate(data_root, out, backgrounds, calibration_scans, seed)


def _calibrate(data_root: Path, out: Path, backgrounds: list, num_scans: int, seed: int) -> None:
    """Choose the operating points (with and without the classifier) on validation inserted scans."""
    from lungai.evaluation.detection_eval import (
        OPERATING_TARGETS,
        at_threshold,
        choose_operating_points,
        detect_in,
        inserted_cases,
        summarize,
    )
    from lungai.models.checkpoint import load_model, write_inference_settings
    from lungai.pipeline.operating_points import checkpoint_operating_points

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
    write_inference_settings(out, checkpoint_operating_points(payload["classifier"]["operating_points"],
                                                              payload["data"]))


@click.command("detection-ensemble", cls=TaskCommand, scope="the detection classifier ensemble",
               short_help="Average trained convlstm_nodule classifiers into one checkpoint.")
@click.option("--member", "members", type=click.Path(path_type=Path, exists=True, file_okay=False), multiple=True,
              required=True, help="A trained convlstm_nodule checkpoint folder (repeat; the first one scores every "
                                  "candidate, the others only the strong ones).")
@click.option("--boundary-member", "boundary_members", type=click.Path(path_type=Path, exists=True, file_okay=False),
              multiple=True, help="A convlstm_nodule checkpoint trained with nodules against the lung boundary "
                                  "(--pleural-fraction; repeat): weighted more at candidates near the boundary.")
@click.option("--flips", is_flag=True,
              help="Score the candidates the whole ensemble rescores in four test-time flips, logits averaged "
                   "(always on with boundary members).")
@click.option("--data-root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="The shared data folder (lidc_vois/, backgrounds/, lung_pet_ct_dx/).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/detection/convlstm_ensemble"),
              show_default=True, help="Folder for the ensemble checkpoint.")
@threads_option(1)
@click.option("--calibration-scans", type=int, default=6, show_default=True,
              help="Validation inserted-nodule scans the operating points are chosen on (0: skip).")
@seed_option
def train_detection_ensemble(members: tuple[Path, ...], boundary_members: tuple[Path, ...], flips: bool,
                             data_root: Path, out: Path, threads: int, calibration_scans: int, seed: int) -> None:
    """Combine trained false-positive classifiers into one ensemble checkpoint (logits averaged; boundary
    members weighted more at candidates near the lung boundary).

    Writes config.json + model.safetensors + members.json (each member's folder and training
    metrics) in --out, then operating_points.json chosen on validation inserted-nodule scans,
    as lungai train detection does for one classifier. Nothing is trained.
    """
    import torch

    from lungai.errors import WeightsError
    from lungai.models.checkpoint import load_model, save_model
    from lungai.models.convlstm_nodule import ConvLSTMNodule, ConvLSTMNoduleEnsemble

    torch.set_num_threads(threads)
    models = []
    for option, folder in [("--member", f) for f in members] + [("--boundary-member", f) for f in boundary_members]:
        try:
            model = load_model(folder)
        except WeightsError as exc:
            raise click.UsageError(f"{option} {folder}: {exc}") from None
        if not isinstance(model, ConvLSTMNodule):
            raise click.UsageError(f"{option} {folder} is a {type(model).__name__}, not a ConvLSTMNodule")
        models.append(model)
    try:
        ensemble = ConvLSTMNoduleEnsemble.of(models, boundary_members=len(boundary_members), flips=flips)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    save_model(ensemble, out)
    records = [_member_record(folder) for folder in members]
    records += [{**_member_record(folder), "boundary_member": True} for folder in boundary_members]
    (out / "members.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    click.echo(f"ensemble of {len(models)} classifiers ({len(boundary_members)} for the lung boundary) saved in {out}")
    if calibration_scans:
        from lungai.data.lesion_insertion import BACKGROUND_NAMES, load_background

        _calibrate(data_root, out, [load_background(name, data_root) for name in BACKGROUND_NAMES],
                   calibration_scans, seed)


def _member_record(folder: Path) -> dict:
    """What is known of a member: its folder and its training run's metrics.json, if it has one."""
    metrics = folder / "metrics.json"
    record: dict = {"folder": str(folder)}
    if metrics.is_file():
        data = json.loads(metrics.read_text(encoding="utf-8"))
        record.update({key: data[key] for key in ("best_epoch", "validation", "config") if key in data})
    return record
