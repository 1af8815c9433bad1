"""Short nnU-Net v2 trainers for LungAI's CPU smoke test and short baselines.

nnU-Net finds these through the ``nnUNet_extTrainer`` environment variable (nnunetv2 >= 2.8):
``lungai baseline nnunet train --trainer-dir <this folder> --trainer nnUNetTrainer_LungAISmoke``.
They change only the length of training (and the smoke trainer drops mirroring, as nnU-Net's
own ``nnUNetTrainerNoMirroring`` does); the network, loss, other augmentation and inference are
nnU-Net's defaults. This module is imported by nnU-Net, not by LungAI.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
    nnUNetTrainerNoMirroring,
)


class nnUNetTrainer_LungAISmoke(nnUNetTrainerNoMirroring):  # noqa: N801 - nnU-Net's trainer naming
    """Two epochs of two iterations and one validation iteration: checks the pipeline, learns nothing.

    No mirroring, so the final validation and prediction make one pass per tile instead of eight.
    """

    # nnU-Net reads the parameter names of __init__ to save them: they must be spelled out.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class nnUNetTrainer_LungAIShortCPU(nnUNetTrainer):  # noqa: N801 - nnU-Net's trainer naming
    """Ten epochs of 25 iterations (a tenth of one default epoch each): a baseline for about half an hour of one CPU
    core."""

    # nnU-Net reads the parameter names of __init__ to save them: they must be spelled out.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
