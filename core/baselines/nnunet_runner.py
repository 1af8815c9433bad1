"""Run nnU-Net v2's documented commands with the three nnU-Net folders set for the child process only.

The commands are ``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train`` and ``nnUNetv2_predict``
(nnU-Net v2's README). Each runs as a subprocess whose environment gets ``nnUNet_raw``,
``nnUNet_preprocessed``, ``nnUNet_results`` (and ``nnUNet_extTrainer`` when trainer folders
are given), thread limits, ``nnUNet_n_proc_DA`` and ``nnUNet_def_n_proc``; this process's ``os.environ`` is never
changed. Every call appends its command line and output to
``<results>/lungai_logs/<step>.log`` and records wall time and peak memory in
``<results>/lungai_logs/<step>.json``.

nnU-Net is an optional extra (``pip install lungai[nnunet]``) or a separate environment: the
commands are looked up in ``NnUNetRunConfig.nnunet_bin`` when it is set (the ``bin/`` folder of
another virtual environment, e.g. ``.venv-nnunet`` with a torch/torchvision pair that nnU-Net can
import; ``DEVELOPERS.md``), otherwise next to this Python (the same virtual environment), then on
``PATH``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lungai.baselines.process import run_measured
from lungai.errors import ExternalToolError, InputNotFoundError, MissingExtraError

logger = logging.getLogger(__name__)

LOG_DIR = "lungai_logs"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class NnUNetPaths:
    """nnU-Net's three folders.

    Attributes:
        raw: ``nnUNet_raw`` (holds ``DatasetNNN_Name/`` from :mod:`lungai.baselines.nnunet_export`).
        preprocessed: ``nnUNet_preprocessed``.
        results: ``nnUNet_results`` (trained models; the logs go to ``lungai_logs/`` inside).
    """

    raw: Path
    preprocessed: Path
    results: Path


@dataclass(frozen=True)
class NnUNetRunConfig:
    """How nnU-Net runs.

    Attributes:
        dataset_id: the dataset number.
        configuration: ``2d``, ``3d_fullres``, ``3d_lowres`` or ``3d_cascade_fullres``.
        trainer: the trainer class name (``nnUNetTrainer`` or a variant).
        fold: ``0``-``4`` or ``all``.
        plans: the plans identifier.
        device: ``cpu``, ``cuda`` or ``mps``.
        threads: torch / BLAS threads of the child process.
        augmentation_workers: ``nnUNet_n_proc_DA`` for training (0: augment in the main process).
        trainer_dirs: folders for ``nnUNet_extTrainer`` (trainer classes outside nnU-Net).
        nnunet_bin: folder holding nnU-Net's commands (another environment's ``bin/``); None: this
            environment, then ``PATH``.
    """

    dataset_id: int
    configuration: str = "3d_fullres"
    trainer: str = "nnUNetTrainer"
    fold: str = "all"
    plans: str = "nnUNetPlans"
    device: str = "cpu"
    threads: int = 1
    augmentation_workers: int = 0
    trainer_dirs: tuple[Path, ...] = field(default_factory=tuple)
    nnunet_bin: Path | None = None


@dataclass(frozen=True)
class StepResult:
    """One finished nnU-Net command.

    Attributes:
        step: ``plan_and_preprocess``, ``train`` or ``predict``.
        command: the argument list.
        seconds: wall time.
        peak_rss_mb: peak resident memory of the child (and the children it waited for).
        log: the log file.
    """

    step: str
    command: list[str]
    seconds: float
    peak_rss_mb: float
    log: Path


def find_command(name: str, nnunet_bin: Path | None = None) -> str:
    """The path of an nnU-Net console command: in ``nnunet_bin`` if given, else beside this Python, else on PATH.

    Raises:
        MissingExtraError: the command is not in ``nnunet_bin``, or nnU-Net v2 is not installed.
    """
    if nnunet_bin is not None:
        command = nnunet_bin / name
        if not command.is_file():
            raise MissingExtraError(f"{name} not found in {nnunet_bin}",
                                    "pass the bin/ folder of an environment with nnunetv2 (make nnunet-venv)")
        return str(command)
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise MissingExtraError(f"nnU-Net v2 is not installed ({name} not found next to {sys.executable} or on PATH)",
                                "pip install -c constraints.txt 'lungai[nnunet]', or pass --nnunet-bin")
    return found


def child_environment(paths: NnUNetPaths, config: NnUNetRunConfig,
                      augmentation_workers: int | None = None) -> dict[str, str]:
    """The environment of an nnU-Net child process: a copy of ``os.environ`` plus nnU-Net's variables."""
    env = dict(os.environ)
    env.update({"nnUNet_raw": str(paths.raw), "nnUNet_preprocessed": str(paths.preprocessed),
                "nnUNet_results": str(paths.results),
                "nnUNet_n_proc_DA": str(config.augmentation_workers if augmentation_workers is None
                                        else augmentation_workers),
                # nnU-Net's default worker count (8) for validation export and resampling.
                "nnUNet_def_n_proc": str(config.threads)})
    env.update({name: str(config.threads) for name in _THREAD_VARS})
    if config.trainer_dirs:
        env["nnUNet_extTrainer"] = os.pathsep.join(str(d.resolve()) for d in config.trainer_dirs)
    return env


def run_step(step: str, command: Sequence[str], env: Mapping[str, str], paths: NnUNetPaths) -> StepResult:
    """Run one command, appending its output to the step's log; record its time and peak memory.

    Raises:
        ExternalToolError: the command exits with a non-zero status.
    """
    log_dir = paths.results / LOG_DIR
    log = log_dir / f"{step}.log"
    measured = run_measured(command, log, env)
    result = StepResult(step, list(command), measured.seconds, measured.peak_rss_mb, log)
    (log_dir / f"{step}.json").write_text(json.dumps({"command": result.command, "seconds": result.seconds,
                                                      "peak_rss_mb": result.peak_rss_mb,
                                                      "returncode": measured.returncode}, indent=2), encoding="utf-8")
    if measured.returncode != 0:
        raise ExternalToolError(f"{Path(command[0]).name} exited with status {measured.returncode}", f"see {log}")
    logger.info("%s done in %.0f s (peak %.0f MB)", step, result.seconds, result.peak_rss_mb)
    return result


def dataset_folder(root: Path, dataset_id: int) -> Path:
    matches = sorted(root.glob(f"Dataset{dataset_id:03d}_*"))
    if not matches:
        raise InputNotFoundError(f"no Dataset{dataset_id:03d}_* folder in {root}",
                                 "run `lungai baseline nnunet export` first or check --dataset-id")
    return matches[0]


def plan_and_preprocess(paths: NnUNetPaths, config: NnUNetRunConfig) -> StepResult:
    """``nnUNetv2_plan_and_preprocess`` for one configuration, then LungAI's ``splits_final.json`` into place.

    The export's ``splits_final.json`` (fold 0 = LungAI's train / val) is copied into the
    preprocessed dataset folder, where nnU-Net looks for custom splits.
    """
    raw = dataset_folder(paths.raw, config.dataset_id)
    command = [find_command("nnUNetv2_plan_and_preprocess", config.nnunet_bin), "-d", str(config.dataset_id),
               "-c", config.configuration, "-npfp", str(config.threads), "-np", str(config.threads),
               "--verify_dataset_integrity"]
    # nnU-Net's planner sets torch's thread count from nnUNet_n_proc_DA, which must be positive there.
    env = child_environment(paths, config, augmentation_workers=max(1, config.augmentation_workers))
    result = run_step("plan_and_preprocess", command, env, paths)
    splits = raw / "splits_final.json"
    if splits.is_file():
        shutil.copyfile(splits, paths.preprocessed / raw.name / "splits_final.json")
    return result


def train(paths: NnUNetPaths, config: NnUNetRunConfig) -> StepResult:
    """``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS -device DEVICE``."""
    command = [find_command("nnUNetv2_train", config.nnunet_bin), str(config.dataset_id), config.configuration,
               config.fold, "-tr", config.trainer, "-p", config.plans, "-device", config.device]
    return run_step("train", command, child_environment(paths, config), paths)


def predict(paths: NnUNetPaths, config: NnUNetRunConfig, images: Path, output: Path,
            checkpoint: str = "checkpoint_final.pth", mirroring: bool = True) -> StepResult:
    """``nnUNetv2_predict -i IMAGES -o OUTPUT -chk CHECKPOINT`` with the trained model of ``config``.

    ``mirroring=False`` adds ``--disable_tta`` (no test-time mirroring: about 8x faster in 3D, usually
    slightly less accurate).

    The time and peak memory are also written to ``<output>/lungai_timing.json``, which
    ``lungai compare`` reads.

    Raises:
        InputNotFoundError: ``images`` holds no ``*_0000.nii.gz``.
    """
    n_cases = len(list(images.glob("*_0000.nii.gz")))
    if n_cases == 0:
        raise InputNotFoundError(f"no *_0000.nii.gz images in {images}", "pass the imagesTs folder of the export")
    command = [find_command("nnUNetv2_predict", config.nnunet_bin), "-i", str(images), "-o", str(output),
               "-d", str(config.dataset_id), "-c", config.configuration, "-tr", config.trainer, "-p", config.plans,
               "-f", config.fold, "-chk", checkpoint, "-device", config.device, "-npp", "1", "-nps", "1",
               "--disable_progress_bar", *([] if mirroring else ["--disable_tta"])]
    result = run_step("predict", command, child_environment(paths, config), paths)
    (output / "lungai_timing.json").write_text(json.dumps({
        "method": f"nnU-Net {config.configuration} {config.trainer} fold {config.fold}"
                  + ("" if mirroring else " no TTA"),
        "checkpoint": checkpoint, "mirroring": mirroring, "n_cases": n_cases, "seconds": result.seconds,
        "peak_rss_mb": result.peak_rss_mb,
        "device": config.device, "threads": config.threads}, indent=2), encoding="utf-8")
    return result
