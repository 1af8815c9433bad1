"""``lungai baseline nnunet export|train|predict``: an nnU-Net v2 baseline on LungAI's split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

_DIR = click.Path(path_type=Path, file_okay=False)


def _paths_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--raw", type=_DIR, required=True, help="nnUNet_raw: the folder given to `export --out`."),
        click.option("--preprocessed", type=_DIR, required=True, help="nnUNet_preprocessed for this run."),
        click.option("--results", type=_DIR, required=True,
                     help="nnUNet_results for this run (logs go to lungai_logs/ inside)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--dataset-id", type=click.IntRange(1, 999), default=501, show_default=True),
        click.option("--configuration", default="3d_fullres", show_default=True,
                     help="nnU-Net configuration (2d, 3d_fullres, ...)."),
        click.option("--trainer", default="nnUNetTrainer", show_default=True, help="nnU-Net trainer class."),
        click.option("--fold", default="0", show_default=True,
                     help="0-4 or all; fold 0 is LungAI's own train / val split."),
        click.option("--plans", default="nnUNetPlans", show_default=True, help="Plans identifier."),
        click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default="cpu", show_default=True),
        click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
                     help="torch / BLAS threads of nnU-Net."),
        click.option("--trainer-dir", "trainer_dirs", type=click.Path(path_type=Path, exists=True, file_okay=False),
                     multiple=True, help="Folder with trainer classes, passed as nnUNet_extTrainer (repeatable)."),
        click.option("--nnunet-bin", type=click.Path(path_type=Path, exists=True, file_okay=False),
                     envvar="LUNGAI_NNUNET_BIN", default=None,
                     help="bin/ folder of the environment with nnunetv2 (default: this one, then PATH)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_config(kwargs: dict[str, Any]) -> Any:
    from lungai.baselines.nnunet_runner import NnUNetRunConfig

    return NnUNetRunConfig(dataset_id=kwargs["dataset_id"], configuration=kwargs["configuration"],
                           trainer=kwargs["trainer"], fold=kwargs["fold"], plans=kwargs["plans"],
                           device=kwargs["device"], threads=kwargs["threads"],
                           augmentation_workers=kwargs.get("augmentation_workers", 0),
                           trainer_dirs=tuple(kwargs["trainer_dirs"]), nnunet_bin=kwargs["nnunet_bin"])


@click.group("baseline")
def baseline() -> None:
    """Baselines trained on the same data as LungAI's models."""


@baseline.group("nnunet")
def nnunet() -> None:
    """nnU-Net v2 (needs `pip install lungai[nnunet]` for train and predict)."""


@nnunet.command("export")
@click.option("--task", type=click.Choice(["nodule-seg"]), default="nodule-seg", show_default=True)
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Folder laid out like lidc_vois/ (image/, mask/, nodules.csv).")
@click.option("--out", type=_DIR, required=True, help="nnUNet_raw folder; DatasetNNN_Name/ is written inside.")
@click.option("--dataset-id", type=click.IntRange(1, 999), default=501, show_default=True)
@click.option("--name", default="LIDCNodules", show_default=True, help="Dataset name after DatasetNNN_.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N cases per split (smoke tests).")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset folder.")
def export(task: str, data: Path, out: Path, dataset_id: int, name: str, limit: int | None, overwrite: bool) -> None:
    """Write the VOIs as an nnU-Net raw dataset from LungAI's patient-level split (imagesTs = test split)."""
    from lungai.baselines.nnunet_export import NnUNetExportConfig, export_nnunet_raw

    result = export_nnunet_raw(NnUNetExportConfig(data=data, out=out, dataset_id=dataset_id, name=name,
                                                  limit=limit, overwrite=overwrite))
    click.echo(f"{task}: wrote {result.folder} ({len(result.train)} train + {len(result.val)} val in imagesTr, "
               f"{len(result.test)} test in imagesTs)")


@nnunet.command("train")
@_paths_options
@_model_options
@click.option("--augmentation-workers", type=click.IntRange(0), default=0, show_default=True,
              help="nnUNet_n_proc_DA (0: augmentation in the training process).")
@click.option("--skip-preprocess", is_flag=True, help="Reuse an existing plan and preprocessing.")
def train(raw: Path, preprocessed: Path, results: Path, skip_preprocess: bool, **kwargs: Any) -> None:
    """Plan and preprocess, then train one configuration, trainer and fold."""
    from lungai.baselines import nnunet_runner

    paths = nnunet_runner.NnUNetPaths(raw=raw, preprocessed=preprocessed, results=results)
    config = _run_config(kwargs)
    if not skip_preprocess:
        nnunet_runner.plan_and_preprocess(paths, config)
    result = nnunet_runner.train(paths, config)
    click.echo(f"trained in {result.seconds:.0f} s; model in {results}; log {result.log}")


@nnunet.command("predict")
@_paths_options
@_model_options
@click.option("-i", "--input", "images", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=None, help="Folder of <case>_0000.nii.gz (default: the dataset's imagesTs).")
@click.option("-o", "--output", type=_DIR, required=True, help="Folder for <case>.nii.gz predictions.")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True,
              help="Checkpoint file of the model folder (checkpoint_best.pth for a run that was stopped).")
@click.option("--no-tta", is_flag=True, help="Pass --disable_tta (no test-time mirroring; about 8x faster in 3D).")
def predict(raw: Path, preprocessed: Path, results: Path, images: Path | None, output: Path, checkpoint: str,
            no_tta: bool, **kwargs: Any) -> None:
    """Predict with a trained nnU-Net model; writes timing for `lungai compare`."""
    from lungai.baselines import nnunet_runner

    paths = nnunet_runner.NnUNetPaths(raw=raw, preprocessed=preprocessed, results=results)
    config = _run_config(kwargs)
    if images is None:
        images = nnunet_runner.dataset_folder(raw, config.dataset_id) / "imagesTs"
    result = nnunet_runner.predict(paths, config, images, output, checkpoint, mirroring=not no_tta)
    click.echo(f"predicted in {result.seconds:.0f} s (peak {result.peak_rss_mb:.0f} MB); masks in {output}")
