"""The configuration of one training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungai.data.augment import AugmentConfig

TASKS = ("malignancy", "nodule-seg")


@dataclass
class TrainConfig:
    """Everything a training run depends on; written into the run's ``metrics.json``.

    Attributes:
        task: ``malignancy`` or ``nodule-seg``.
        model: a registry model name.
        data: a folder laid out like ``lidc_vois/`` (``image/``, ``mask/``, ``nodules.csv``).
        out: the run folder (best model, ``metrics.json``, ``train.log``, ``last/`` for resuming).
        epochs: the most epochs to train (early stopping may end sooner).
        batch_size: samples per optimiser step.
        optimizer: ``adam`` or ``sgd``.
        lr: initial learning rate.
        weight_decay: L2 penalty of the optimiser.
        momentum: SGD momentum (ignored by Adam).
        scheduler: ``cosine`` (annealed to 1% of ``lr`` over ``epochs``) or ``none``.
        loss: a :func:`lungai.models.losses.build_loss` name.
        class_weights: weight the classes inversely to their training frequency (classifiers).
        patience: stop after this many epochs without a better validation metric; 0 never stops.
        seed: seeds the initialisation, the shuffles, dropout and the augmentation.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        num_threads: CPU threads torch may use.
        label_rule: malignancy label rule (see :data:`lungai.data.lidc_vois.LABEL_RULES`).
        augment: augment training samples on the fly.
        shift_fraction: how far the augmented crop window may move off the VOI centre, as a
            fraction of the ROI size per axis (larger values show the nodule off-centre, as the
            tiles of a large nodule do at inference).
        negative_scans: unlabelled whole scans (``PATH``, ``PATH:left``, ``PATH:right``; see
            :class:`lungai.data.negative_rois.NegativeScan`) whose lesion-free ROIs join the
            training cases with an empty mask (nodule-seg: the tumour model's whole-scan
            negatives). Never the test patients' scans.
        negatives_per_scan: negative ROIs cut from each of ``negative_scans``.
        max_cases: use at most this many cases per split (tests, smoke runs); ``None`` for all.
        min_diameter_mm: train and validate only on nodules with at least this csv
            ``diameter_mm`` (case selection, never a model input; the tumour model's large
            nodules); ``None`` for all.
        model_config: overrides of the model's default configuration (tests use tiny models).
        split_file: a split csv; ``None`` uses the committed split.
        init_weights: a checkpoint folder of the same architecture and widths whose weights
            start a new run (fine-tuning: a fresh optimiser and schedule); ``None`` initialises
            at random. Ignored when the run resumes from its own saved state.
    """

    task: str
    model: str
    data: Path
    out: Path
    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
    loss: str = "ce"
    class_weights: bool = True
    patience: int = 10
    seed: int = 0
    device: str = "cpu"
    num_threads: int = 2
    label_rule: str = "ge2_readers_gt3"
    augment: bool = True
    shift_fraction: float = AugmentConfig.shift_fraction
    negative_scans: list[str] = field(default_factory=list)
    negatives_per_scan: int = 100
    max_cases: int | None = None
    min_diameter_mm: float | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    split_file: Path | None = None
    init_weights: Path | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        self.data, self.out = Path(self.data), Path(self.out)
        if self.negative_scans and self.task != "nodule-seg":
            raise ValueError("negative scans are for nodule-seg models only")
        if self.negatives_per_scan < 1:
            raise ValueError("negatives_per_scan must be at least 1")
        self.negative_scans = [str(scan) for scan in self.negative_scans]
        if not 0.0 <= self.shift_fraction < 0.5:
            raise ValueError(f"shift_fraction must be in [0, 0.5), got {self.shift_fraction}")
        if self.init_weights is not None:
            self.init_weights = Path(self.init_weights)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in vars(self).items()}
