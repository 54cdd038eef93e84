"""The training settings: the parameter table's training rows, and the config of one training run.

`TrainSettings` holds one row per training knob (default, meaning, check). The parameter table
(helpers.run.parameters) takes these rows as they are, so a new knob is one row here plus the line
in the training loop that uses it: the notebooks' parameters cells, `default.yaml` and docs/parameters.md
table are generated from the table, and `Config.train_config()` passes every row on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..core.checks import boolean, check_fields, check_value, choice, integer, number, param
from ..core.errors import ParameterError
from .augment import AUGMENTS
from .batches import IMAGES_ON_DEVICE, Images, on_device
from .inference import EVAL_BATCH_SIZE
from .networks import ARCHS

LOSSES = ("cross_entropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLE_WEIGHTS = ("none", "label_quality")
KEEP_WEIGHTS = ("best", "last")
SELECT_BY = {"val_loss": ("val_loss", -1), "val_accuracy": ("val_accuracy_certain", 1),
             "val_roc_auc": ("val_roc_auc_certain", 1)}  # -> (history column, +1 higher is better / -1 lower)
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "onecycle", "cosine")
UNLABELED_POLICIES = ("ignore", "consistency", "cotrain")  # what a fit does with the rows it has no label for


def device_name(value: Any) -> str:
    if not isinstance(value, str) or not (value == "auto" or value.split(":")[0] in ("cpu", "cuda")):
        raise ValueError(f"must be auto, cpu or cuda[:N], got {value!r}")
    return value


@dataclass
class TrainSettings:
    """The training rows of the parameter table. The defaults are the origin's recipe."""

    arch: str = param("resnet18", "network: resnet10, resnet18 (origin), resnet34 or resnet50", choice(*sorted(ARCHS)))
    width: int = param(64, "base channels: 64 = origin, 16 or 32 for fast runs", integer(4))
    epochs: int = param(40, "training epochs", integer(1))
    min_steps: int = param(0, "0 = off; else a fit whose epochs give fewer optimizer steps than this trains for more "
                           "epochs, until it has them (a small set gets as many updates as the recipe gives a larger "
                           "one)", integer(0))
    batch_size: int = param(32, "training batch size", integer(1))
    lr: float = param(0.001, "Adam learning rate", number(0, 10, lo_open=True, hi_open=True))
    val_frac: float = param(0.3, "share of trainable rows used for validation",
                            number(0, 1, lo_open=True, hi_open=True))
    loss: str = param("cross_entropy", "cross_entropy or focal", choice(*LOSSES))
    focal_gamma: float = param(2.0, "focusing parameter of the focal loss", number(0, 100, hi_open=True))
    label_smoothing: float = param(0.0, "label smoothing in [0, 1)", number(0, 1, hi_open=True))
    class_weights: str = param("none", "none, or balanced: each class's loss weighted by n / (classes x count)",
                               choice(*CLASS_WEIGHTS))
    keep_weights: str = param("best", "best: weights of the epoch with the best validation score (select_by); last: of "
                              "the final epoch (as the origin)", choice(*KEEP_WEIGHTS))
    select_by: str = param("val_loss", "the validation score that picks the best epoch: val_loss (all validation "
                           "rows), val_accuracy or val_roc_auc (on the certain validation rows, not relabeled unsures)",
                           choice(*SELECT_BY))
    patience: int = param(0, "stop after this many epochs without a better validation score; 0 = never", integer(0))
    optimizer: str = param("adam", "adam, or adamw (decoupled weight decay)", choice(*OPTIMIZERS))
    weight_decay: float = param(0.0, "weight decay of the optimizer", number(0, 1, hi_open=True))
    schedule: str = param("constant", "learning rate per batch: constant, onecycle (up to lr over the first 30%, then "
                          "down) or cosine (one epoch of warm-up, then down to 0)", choice(*SCHEDULES))
    augment: str = param("none", "none, flips_rot90 (the 8 symmetries of the square, for crops with no up or down) "
                         "or flips_rot90_shift (also shifts of up to 2 pixels)", choice(*AUGMENTS))
    mixup_alpha: float = param(0.0, "MixUp: each training batch is mixed with a shuffled copy of itself, inputs and "
                               "targets alike, in a proportion drawn from Beta(alpha, alpha); 0 = off",
                               number(0.0, 10.0))
    tta: bool = param(False, "test-time augmentation: predict the mean output over the image's symmetries", boolean)
    tta_views: int = param(0, "with tta: how many of the image's symmetries to predict from, the quarter turns first "
                           "(4: the four turns, half the cost of all 8); 0 = every one", integer(0, 8))
    calibrate: bool = param(False, "fit a softmax temperature on the validation rows, so outputs such as 0.9 mean "
                            "what they say", boolean)
    device: str = param("auto", "auto (CUDA when present), cpu or cuda[:N]", device_name)
    min_steps_per_epoch: int = param(0, "0 = off; else a set with too few training rows for this many batches of "
                                     "batch_size per epoch trains with smaller batches (this many per epoch) and the "
                                     "learning rate scaled down in proportion (linear scaling), so a GPU profile's large "
                                     "batches suit small sets too", integer(0))
    images_on_device: str = param("auto", "keep a copy of the whole image set on the training device, so batches "
                                  "and test-time views are indexed there: auto (on a GPU when the set takes at most "
                                  "half its free memory), yes or no (read each batch from the array, as on the CPU)",
                                  choice(*IMAGES_ON_DEVICE))
    amp: bool = param(False, "bf16 autocast of the forward passes on a GPU (no effect on the CPU)", boolean)
    compile: bool = param(False, "torch.compile the network for training (pays on a GPU for long runs; on the CPU "
                          "it needs a C++ compiler and its first epoch is slow)", boolean)
    seed: int = param(0, "random seed: same seed, same machine, same results", integer(0))
    sample_weights: str = param("none", "none, or label_quality: each image's loss weighted by the baseline's "
                                "label quality (needs 03 with wrong_from='out_of_fold')", choice(*SAMPLE_WEIGHTS))
    consistency_weight: float = param(1.0, "for strategies that train by consistency on the images they do not "
                                      "label (unsures left out, pruned labels): the weight of that loss (FixMatch's "
                                      "lambda_u)", number(0, 100))
    pseudo_threshold: float = param(0.95, "for those strategies: the confidence of an image's weakly augmented "
                                    "prediction from which it becomes the target of its strongly augmented view "
                                    "(FixMatch's tau)", number(0.5, 1))
    elr_lambda: float = param(0.0, "early-learning regularization (ELR): the weight of log(1 - <prediction, the row's "
                              "running average of its predictions>) added to the loss, so a fit resists memorising "
                              "wrong labels; 0 = off", number(0, 100))
    elr_beta: float = param(0.7, "for ELR: the share of a row's running average of its predictions kept each time the "
                            "row trains", number(0, 1, hi_open=True))
    cotrain_warmup: int = param(2, "for co-training strategies (s_cotrain): epochs both networks train on every label "
                                "before they divide the data for each other", integer(1))
    cotrain_keep: str = param("last", "for co-training: which epoch's pair to keep: last (DivideMix's; measured across "
                              "settings) or best (the best validation score of the pair's mean, select_by; with noisy "
                              "validation labels it may pick the warm-up)", choice("last", "best"))
    cotrain_threshold: float = param(0.5, "for co-training: the clean probability (from the other network's loss "
                                     "mixture) from which a row keeps its label; below it, it joins the unlabeled "
                                     "rows", number(0, 1, lo_open=True, hi_open=True))
    cotrain_unlabeled_weight: float = param(0.0, "for co-training: the weight of the loss on the unlabeled rows "
                                            "(their co-guessed targets) against that on the labelled rows, "
                                            "ramped up linearly over the co-training epochs (DivideMix's lambda_u; "
                                            "off by default: the guesses for the rows without a label are 55-85% right, "
                                            "cotrain_division.jsonl, and at 1 they cost accuracy on both data sets, "
                                            "cotrain_settings.jsonl)", number(0, 100))
    cotrain_sharpen: float = param(0.5, "for co-training: the temperature that sharpens the refined labels and the "
                                   "co-guesses (1 = as predicted)", number(0, 1, lo_open=True))
    cotrain_mixup: float = param(0.0, "for co-training: MixUp's Beta(alpha, alpha) across labelled and unlabeled rows "
                                 "(each row keeps the larger share; DivideMix's 4 cost accuracy in the recipe's 10 "
                                 "epochs, cotrain_settings.jsonl); 0 = off",
                                 number(0.0, 10.0))


TRAIN_PARAMETERS: tuple[str, ...] = tuple(f.name for f in fields(TrainSettings))


@dataclass
class TrainConfig(TrainSettings):
    """One training run's settings: the training rows (checked on creation; an error names the
    parameter) plus how this run reports and where it resumes from."""

    normalize: bool = True
    run_name: str = ""
    resume_from: Path | None = None  # a checkpoint.pt to continue from
    eval_batch_size: int = EVAL_BATCH_SIZE
    progress: bool = True
    unlabeled: str = "ignore"  # the rows rounding below 0: "consistency" (FixMatch) or "cotrain" (model.cotrain)

    def __post_init__(self) -> None:
        check_fields(self)
        check_value("unlabeled", choice(*UNLABELED_POLICIES), self.unlabeled)
        if self.elr_lambda and self.mixup_alpha:
            raise ParameterError("elr_lambda", "ELR averages each row's own predictions, which MixUp blends with "
                                 "another row's: set mixup_alpha: 0 or elr_lambda: 0")
        if self.unlabeled == "cotrain" and self.cotrain_warmup >= self.epochs:
            raise ParameterError("cotrain_warmup", f"is {self.cotrain_warmup}, but the fit has {self.epochs} epochs: "
                                 "co-training needs epochs after the warm-up (lower cotrain_warmup or raise epochs)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError("device", "cuda requested but no CUDA device is available")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def device_images(self, images: Images) -> Images:
        """The images this run trains and predicts from: the array, or its copy on the device
        (`images_on_device`; batches.on_device, which a fit's folds and predictions share)."""
        return on_device(images, self.torch_device, self.images_on_device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
