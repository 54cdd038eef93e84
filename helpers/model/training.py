"""Train a classifier on an annotated image set.

One readable loop in the spirit of nanoGPT / timm: the config at the top, `train_one_epoch` and
`evaluate` return dicts, the best weights by validation loss are kept. Batches are read straight
from the memory-mapped uint8 array and converted per batch. Checkpoints let a run resume.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR
from tqdm import tqdm

from ..core.columns import SOFT_TARGET, flag_column
from ..core.errors import InputError, NotTrainable, ParameterError
from ..core.io import OutputSet, code_hash, file_identity
from ..core.labels import NEGATIVE_VALUE, POSITIVE_VALUE, LabelScheme, round_annotations
from ..data.sets import ImageSet
from .augment import AUGMENTS, augment_batch
from .inference import EVAL_BATCH_SIZE, best_temperature, inference_copy, predict_logits, to_tensor, view_logits
from .networks import ARCHS, ModelSpec, ResNet, build_model, memory_format

LOSSES = ("cross_entropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLE_WEIGHTS = ("none", "label_quality")
KEEP_WEIGHTS = ("best", "last")
SELECT_BY = {"val_loss": ("val_loss", -1), "val_accuracy": ("val_accuracy_certain", 1),
             "val_roc_auc": ("val_roc_auc_certain", 1)}  # -> (history column, +1 higher is better / -1 lower)
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "onecycle", "cosine")


@dataclass
class TrainConfig:
    """One training run's settings. The parameters' defaults and meanings are in the parameter table
    (helpers.run.parameters); `train_config(**overrides)` there builds one from them."""

    arch: str
    width: int
    epochs: int
    batch_size: int
    lr: float
    val_frac: float
    seed: int
    loss: str
    focal_gamma: float
    label_smoothing: float
    class_weights: str
    sample_weights: str  # label_quality: each row's loss weighted by its `label_quality` column
    keep_weights: str  # best: the epoch with the lowest validation loss; last: the final epoch
    patience: int  # epochs without a better validation score before stopping; 0 = never stop early
    device: str
    augment: str  # none, flips_rot90 (the square's 8 symmetries) or flips_rot90_shift
    tta: bool  # predict as the mean over the image's symmetries
    select_by: str  # which validation score picks the best epoch (and drives patience)
    optimizer: str  # adam or adamw
    weight_decay: float
    schedule: str  # constant, onecycle or cosine (with one epoch of warm-up)
    calibrate: bool  # fit a softmax temperature on the validation rows
    normalize: bool = True
    run_name: str = ""
    resume_from: Path | None = None  # a checkpoint.pt to continue from
    eval_batch_size: int = EVAL_BATCH_SIZE
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("arch", self.arch in ARCHS, f"must be one of {sorted(ARCHS)}"),
            ("loss", self.loss in LOSSES, f"must be one of {list(LOSSES)}"),
            ("class_weights", self.class_weights in CLASS_WEIGHTS, f"must be one of {list(CLASS_WEIGHTS)}"),
            ("sample_weights", self.sample_weights in SAMPLE_WEIGHTS, f"must be one of {list(SAMPLE_WEIGHTS)}"),
            ("keep_weights", self.keep_weights in KEEP_WEIGHTS, f"must be one of {list(KEEP_WEIGHTS)}"),
            ("width", _is_int(self.width) and self.width >= 4, "must be an integer >= 4"),
            ("epochs", _is_int(self.epochs) and self.epochs >= 1, "must be an integer >= 1"),
            ("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "must be an integer >= 1"),
            ("lr", _is_number(self.lr) and 0 < self.lr < 10, "must be a number in (0, 10)"),
            ("val_frac", _is_number(self.val_frac) and 0 < self.val_frac < 1, "must be in (0, 1)"),
            ("label_smoothing", _is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             "must be in [0, 1)"),
            ("focal_gamma", _is_number(self.focal_gamma) and 0 <= self.focal_gamma < 100, "must be a number in [0, 100)"),
            ("patience", _is_int(self.patience) and self.patience >= 0, "must be an integer >= 0"),
            ("device", self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"), "must be auto, cpu or cuda[:N]"),
            ("augment", self.augment in AUGMENTS, f"must be one of {list(AUGMENTS)}"),
            ("tta", isinstance(self.tta, bool), "must be True or False"),
            ("select_by", self.select_by in SELECT_BY, f"must be one of {list(SELECT_BY)}"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {list(OPTIMIZERS)}"),
            ("weight_decay", _is_number(self.weight_decay) and 0 <= self.weight_decay < 1,
             "must be a number in [0, 1)"),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {list(SCHEDULES)}"),
            ("calibrate", isinstance(self.calibrate, bool), "must be True or False"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ParameterError(name, f"{problem}, got {getattr(self, name)!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError("device", "cuda requested but no CUDA device is available")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- data

@dataclass
class TrainingData:
    """Which rows train, validate, or are only predicted, and their class indices."""

    class_values: list[int]
    class_names: list[str]
    targets: np.ndarray  # class index per row, -1 where the row is not trained on
    train_rows: np.ndarray
    val_rows: np.ndarray
    split: np.ndarray  # train / val / test per row, as written to the predictions
    certain: np.ndarray  # per row: annotated with a whole class value, not a relabeled unsure (0.8, 0.2)


def prepare_training_data(image_set: ImageSet, scheme: LabelScheme, val_frac: float, seed: int,
                          holdout: np.ndarray | None = None) -> TrainingData:
    """Rounded annotations >= 0 outside the test split are trainable; a stratified val_frac of them validates.

    `holdout` (a boolean mask) keeps more rows out of training and validation: a cross-validation fold.
    """
    ann = image_set.ann
    rounded = round_annotations(ann["annotation"])
    split_in = ann["split"].astype(str).to_numpy() if "split" in ann.columns else np.full(len(ann), "train")
    excluded = flag_column(ann, "exclude")  # set in the review widget: seen, but kept out of training
    if holdout is not None:
        excluded = excluded | holdout
    trainable = np.flatnonzero((rounded >= 0) & (split_in != "test") & ~excluded)
    if len(trainable) == 0:
        raise NotTrainable(image_set.pair.ann, "no rows to train on (every row is test, unlabeled or negative-valued)")
    class_values = sorted(set(rounded[trainable].tolist()))
    if len(class_values) < 2:
        raise NotTrainable(image_set.pair.ann, f"the training rows have one class only ({scheme.name_of(class_values[0])}); "
                                               "a classifier needs at least two")
    index_of = {v: i for i, v in enumerate(class_values)}
    targets = np.full(len(ann), -1, np.int64)
    targets[trainable] = [index_of[v] for v in rounded[trainable]]
    forced_val = trainable[flag_column(ann, "validation")[trainable]]  # reserved for validation by a reviewer
    pool = np.setdiff1d(trainable, forced_val)
    counts = np.bincount(targets[pool]) if len(pool) else np.array([0])
    stratify = targets[pool] if counts.min() >= 2 else None
    train_rows, val_rows = train_test_split(pool, test_size=val_frac, random_state=seed, stratify=stratify)
    val_rows = np.concatenate([val_rows, forced_val])
    split = np.where(split_in == "test", "test", "train").astype(object)
    split[val_rows] = "val"
    certain = np.isclose(ann["annotation"].to_numpy(dtype=float), rounded)
    return TrainingData(class_values, [scheme.name_of(v) for v in class_values], targets,
                        np.sort(train_rows), np.sort(val_rows), split, certain)


def channel_stats(images: np.ndarray, rows: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (0-1 scale) over `rows`, streamed in chunks."""
    total = np.zeros(images.shape[1]); total_sq = np.zeros(images.shape[1])
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for start in range(0, len(rows), chunk):
        x = np.asarray(images[rows[start:start + chunk]], dtype=np.float64) / scale
        total += x.sum(axis=(0, 2, 3)); total_sq += (x**2).sum(axis=(0, 2, 3))
    n = len(rows) * images.shape[2] * images.shape[3]
    mean = total / n
    return mean, np.sqrt(np.maximum(total_sq / n - mean**2, 1e-12))


# ---------------------------------------------------------------- loss

class FocalLoss(nn.Module):
    """Focal loss (Lin et al.): cross-entropy down-weighted by (1 - p_true)^gamma."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 reduction: str = "mean"):
        super().__init__()
        self.gamma, self.label_smoothing, self.reduction = gamma, label_smoothing, reduction
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, weight=self.weight, reduction="none", label_smoothing=self.label_smoothing)
        p_true = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
        loss = (1 - p_true).pow(self.gamma) * ce
        return loss if self.reduction == "none" else loss.mean()


def make_criterion(cfg: TrainConfig, train_targets: np.ndarray, n_classes: int, reduction: str = "mean") -> nn.Module:
    """The training loss; reduction "none" gives per-row losses for sample weights."""
    weight = None
    if cfg.class_weights == "balanced":  # n / (k * count), as scikit-learn's "balanced"
        counts = np.bincount(train_targets, minlength=n_classes).astype(float)
        weight = torch.tensor(len(train_targets) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma, weight, cfg.label_smoothing, reduction)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing, reduction=reduction)


def sample_weights(image_set: ImageSet, cfg: TrainConfig) -> np.ndarray | None:
    """Per-row loss weights, or None. From `label_quality` (confident learning, 03 out_of_fold):
    a likely mislabelled row counts less; rows without a score (e.g. relabeled unsures) weigh 1."""
    if cfg.sample_weights == "none":
        return None
    ann = image_set.ann
    if "label_quality" not in ann.columns:
        raise InputError(image_set.pair.ann, "sample_weights='label_quality' needs a label_quality column "
                                             "(written by 03 with wrong_from='out_of_fold')")
    quality = pd.to_numeric(ann["label_quality"], errors="coerce").to_numpy(dtype=np.float32)
    if (quality[np.isfinite(quality)] < 0).any():
        raise InputError(image_set.pair.ann, "label_quality has negative values; weights must be >= 0")
    return np.where(np.isfinite(quality), quality, 1.0).astype(np.float32)


def soft_targets(image_set: ImageSet, data: TrainingData) -> np.ndarray | None:
    """Per-row target distributions (rows x classes) for the rows with a `soft_target` (the positive
    class's probability, e.g. an unsure's out-of-sample score), NaN rows elsewhere; None without any."""
    ann = image_set.ann
    if SOFT_TARGET not in ann.columns:
        return None
    p = pd.to_numeric(ann[SOFT_TARGET], errors="coerce").to_numpy(dtype=float)
    given = np.isfinite(p)
    if not given.any():
        return None
    if ((p[given] < 0) | (p[given] > 1)).any():
        raise InputError(image_set.pair.ann, f"{SOFT_TARGET} must lie in [0, 1]")
    if sorted(data.class_values) != [NEGATIVE_VALUE, POSITIVE_VALUE]:
        raise InputError(image_set.pair.ann, f"{SOFT_TARGET} needs a two-class training set (negative and positive), "
                                             f"got classes {data.class_names}")
    targets = np.full((len(ann), 2), np.nan, np.float32)
    positive = data.class_values.index(POSITIVE_VALUE)
    targets[given, positive], targets[given, 1 - positive] = p[given], 1 - p[given]
    return targets


def with_soft_targets(loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row losses where the rows with a target distribution (see soft_targets; NaN rows have
    none) take the cross-entropy with it instead of their hard-label loss."""
    soft_loss = -(torch.nan_to_num(targets) * F.log_softmax(logits, 1)).sum(1)
    return torch.where(torch.isfinite(targets[:, 0]), soft_loss, loss)


# ---------------------------------------------------------------- loop

def train_one_epoch(model: nn.Module, images: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                    optimizer: torch.optim.Optimizer, criterion: nn.Module, cfg: TrainConfig, epoch: int,
                    weights: np.ndarray | None = None, scheduler: LRScheduler | None = None,
                    soft: np.ndarray | None = None) -> dict:
    """One pass over `rows`; with `weights` or `soft` (see soft_targets: those rows' loss is the
    cross-entropy with their target distribution) the criterion must give per-row losses
    (reduction "none"). The scheduler, if any, steps after every batch."""
    device = cfg.torch_device
    fmt = memory_format(cfg.width, device)
    model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(rows)  # resumable: depends on (seed, epoch) only
    augmentation = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # likewise
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    batches = range(0, len(order), cfg.batch_size)
    for b in tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not cfg.progress, mininterval=2):
        idx = np.sort(order[b:b + cfg.batch_size])  # sorted reads are faster on a memmap; order within a batch is irrelevant
        x = augment_batch(to_tensor(images[idx], device, fmt), cfg.augment, augmentation)
        y = torch.from_numpy(targets[idx]).to(device)
        logits = model(x)
        loss = criterion(logits, y)
        if soft is not None:
            loss = with_soft_targets(loss, logits, torch.from_numpy(soft[idx]).to(device))
        if weights is not None or soft is not None:
            w = torch.from_numpy(weights[idx]).to(device) if weights is not None else torch.ones_like(loss)
            loss = (loss * w).sum() / w.sum().clamp_min(1e-8)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(idx)
        seen += len(idx)
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "images": seen, "seconds": seconds}


def evaluate(model: nn.Module, images: np.ndarray, rows: np.ndarray, targets: np.ndarray,
             criterion: nn.Module, cfg: TrainConfig, certain: np.ndarray | None = None,
             positive: int | None = None, soft: np.ndarray | None = None) -> dict:
    """Validation loss and accuracy; `criterion` must live on the CPU, where the logits are gathered.
    With `certain` (a mask per row), also accuracy and ROC AUC (class index `positive` against the
    rest) on the certain validation rows: scores that relabeled unsures cannot sway. With `soft`
    (see soft_targets) the loss of those rows is taken against their target distribution, as in training."""
    logits = predict_logits(inference_copy(model), images, rows, cfg.torch_device, cfg.eval_batch_size)
    y = torch.from_numpy(targets[rows])
    with torch.inference_mode():
        if soft is not None and len(rows):
            per_row = with_soft_targets(F.cross_entropy(logits, y, reduction="none"), logits, torch.from_numpy(soft[rows]))
            loss = float(per_row.mean())
        else:
            loss = float(criterion(logits, y)) if len(rows) else float("nan")
    accuracy = float((logits.argmax(1) == y).float().mean()) if len(rows) else float("nan")
    scores = {"val_loss": loss, "val_accuracy": accuracy}
    if certain is not None:
        keep = certain[rows]
        hits = (logits.argmax(1) == y).numpy()[keep]
        scores["val_accuracy_certain"] = float(hits.mean()) if len(hits) else float("nan")
        is_pos = (y.numpy() == positive)[keep]
        scores["val_roc_auc_certain"] = (
            float(roc_auc_score(is_pos, torch.softmax(logits, 1)[:, positive].numpy()[keep]))
            if positive is not None and 0 < is_pos.sum() < len(is_pos) else float("nan"))
    return scores


@dataclass
class FitResult:
    model: ResNet
    spec: ModelSpec
    data: TrainingData
    history: pd.DataFrame
    best_epoch: int  # the epoch whose weights were kept (the last one with keep_weights="last")
    train_seconds: float
    train_images_per_second: float
    stopped_early: bool = False
    resumed_from: Path | None = None  # the checkpoint training continued from, if any


def fit(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, checkpoint_path: Path | None = None,
        holdout: np.ndarray | None = None) -> FitResult:
    """Train on the image set's trainable rows (minus `holdout`); keep the weights of the best
    validation score (`select_by`; or of the last epoch, as the origin did, with keep_weights="last"),
    then fit the softmax temperature on the validation rows when `calibrate` asks for it."""
    torch.manual_seed(cfg.seed)
    data = prepare_training_data(image_set, scheme, cfg.val_frac, cfg.seed, holdout)
    weights = sample_weights(image_set, cfg)
    soft = soft_targets(image_set, data)
    images, device = image_set.images, cfg.torch_device
    spec = ModelSpec(cfg.arch, int(images.shape[1]), data.class_names, data.class_values, cfg.width,
                     list(images.shape[2:]), tta=cfg.tta)
    model = build_model(spec)
    if cfg.normalize:
        model.set_normalization(*map(torch.from_numpy, channel_stats(images, data.train_rows)))
    model = model.to(device, memory_format=memory_format(cfg.width, device))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=-(-len(data.train_rows) // cfg.batch_size))
    train_targets = data.targets[data.train_rows]
    # Two loss modules: the training one lives on the model's device, the validation one on the CPU
    # where evaluate() gathers the logits. Sharing one and moving it would leave class weights behind.
    train_criterion = make_criterion(cfg, train_targets, spec.n_classes,
                                     reduction="mean" if weights is None and soft is None else "none").to(device)
    val_criterion = make_criterion(cfg, train_targets, spec.n_classes)
    column, sign = SELECT_BY[cfg.select_by]
    on_certain = ({"certain": data.certain, "positive": _index_or_none(data.class_values, POSITIVE_VALUE)}
                  if cfg.select_by != "val_loss" else {})

    history: list[dict] = []
    best = {"score": float("-inf"), "epoch": -1, "state": None}
    start_epoch = 0
    resume_from = Path(cfg.resume_from) if cfg.resume_from is not None else None
    # only runs that write or read a checkpoint need to know what made them
    fingerprint = training_fingerprint(image_set, cfg, holdout) if checkpoint_path or resume_from else ""
    restored = load_checkpoint(resume_from, model, optimizer, scheduler, fingerprint) if resume_from else None
    if restored is None:
        resume_from = None
    else:
        start_epoch, history, best = restored

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        row = {"epoch": epoch + 1,
               **train_one_epoch(model, images, data.train_rows, data.targets, optimizer, train_criterion, cfg, epoch,
                                 weights, scheduler, soft),
               **evaluate(model, images, data.val_rows, data.targets, val_criterion, cfg, **on_certain, soft=soft)}
        if not math.isfinite(row["train_loss"]):  # stop before a NaN checkpoint replaces a good one
            raise NotTrainable(image_set.pair.ann, f"training loss became {row['train_loss']} in epoch {epoch + 1} "
                                                   f"(lr {cfg.lr:g}); lower lr or check the images")
        history.append(row)
        if cfg.progress:
            print(f"epoch {row['epoch']:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f}  "
                  f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}  "
                  f"{row['images'] / row['seconds']:.0f} img/s", flush=True)
        if sign * row[column] > best["score"]:
            best = {"score": sign * row[column], "epoch": epoch, "state": _cpu_state(model)}
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, epoch, history, best, fingerprint)
        if cfg.patience and epoch - best["epoch"] >= cfg.patience:
            stopped_early = True
            break

    kept_epoch = len(history)
    if cfg.keep_weights == "best" and best["state"] is not None:
        model.load_state_dict(best["state"])
        kept_epoch = best["epoch"] + 1
    if cfg.calibrate:
        spec.temperature = fit_temperature(model, images, data.val_rows, data.targets, cfg)
    frame = pd.DataFrame(history)
    seconds = float(frame["seconds"].sum()) if len(frame) else 0.0
    images_seen = float(frame["images"].sum()) if len(frame) else 0.0
    return FitResult(model.cpu(), spec, data, frame, kept_epoch, seconds,
                     images_seen / seconds if seconds else 0.0, stopped_early, resume_from)


def _index_or_none(values: list[int], value: int) -> int | None:
    return values.index(value) if value in values else None


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LRScheduler | None:
    """The learning rate per batch: constant (None); one-cycle (up to `lr` over the first 30%, then
    down); or cosine to zero after one epoch of linear warm-up."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.3)
    if cfg.schedule == "cosine":
        warm = steps_per_epoch
        return LambdaLR(optimizer, lambda step: (step + 1) / warm if step < warm
                        else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))
    return None


def fit_temperature(model: ResNet, images: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                    cfg: TrainConfig) -> float:
    """The softmax temperature that best fits the validation rows, over the views the model predicts from."""
    if not len(rows):
        return 1.0
    logits = view_logits(inference_copy(model), images, rows, cfg.torch_device, cfg.eval_batch_size)
    return best_temperature(logits, targets[rows])


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- checkpoints (resume)

def checkpoint_path(bundle_path: Path) -> Path:
    """`s_1a/model_perf_diff.zip` -> `s_1a/checkpoint_diff.pt`: the last epoch of that run."""
    bundle_path = Path(bundle_path)
    return bundle_path.with_name(bundle_path.stem.replace("model_perf", "checkpoint") + ".pt")


# What a checkpoint's run may differ in and still resume: where it runs and how it reports.
_NOT_FINGERPRINTED = ("resume_from", "progress", "run_name", "device")


def training_fingerprint(image_set: ImageSet, cfg: TrainConfig, holdout: np.ndarray | None = None) -> str:
    """Hash of what makes a training run: its input files, its parameters, the code (and a holdout)."""
    h = hashlib.sha256(code_hash().encode())
    for path in image_set.pair:
        h.update(file_identity(path).encode())
    params = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_FINGERPRINTED}
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    if holdout is not None:
        h.update(np.packbits(np.asarray(holdout, bool)).tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None,
                    epoch: int, history: list[dict], best: dict, fingerprint: str = "") -> None:
    with OutputSet() as out:
        torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": history, "best_score": best["score"], "best_epoch": best["epoch"],
                    "best_state": best["state"]}, out.path(path))


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None,
                    fingerprint: str) -> tuple[int, list[dict], dict] | None:
    """Restore a checkpoint of this very run (its `fingerprint`: same inputs, parameters and code);
    returns (next epoch, history so far, best so far). None, saying why, when it was made from
    anything else or is damaged: that would be continued as if it were this run."""
    if not path.is_file():
        raise InputError(path, "checkpoint to resume from not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # damaged: start over
        state = None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        print(f"{path}: made from other inputs, parameters or code than this run (or damaged); not resuming, "
              "training from scratch", flush=True)
        return None
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except Exception as exc:
        raise InputError(path, f"not a checkpoint of this model ({type(exc).__name__}: {str(exc)[:200]})") from None
    # checkpoints written before `select_by` kept the best validation loss
    score = state["best_score"] if "best_score" in state else -state["best_val_loss"]
    best = {"score": score, "epoch": state["best_epoch"], "state": state["best_state"]}
    return state["epoch"] + 1, list(state["history"]), best
