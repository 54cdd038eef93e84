"""Train a classifier on an annotated image set.

One readable loop in the spirit of nanoGPT / timm: the settings (helpers.model.settings) at the top,
setup apart from the loop, `train_one_epoch` and `evaluate` return dicts, and the best weights by
the validation score are kept. Batches are read straight from the memory-mapped uint8 array and
converted per batch. Checkpoints (helpers.model.checkpoints) let a run resume.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ..core.columns import SOFT_TARGET, flag_column, test_mask
from ..core.errors import InputError, NotTrainable, ParameterError
from ..core.labels import NEGATIVE_VALUE, POSITIVE_VALUE, LabelScheme, round_annotations
from ..core.progress import progress_bar
from ..data.sets import ImageSet
from .augment import Mix, augment_batch, draw_mix, mix_inputs, strong_augment
from .batches import Images, image_batch
from .checkpoints import load_checkpoint, save_checkpoint, training_fingerprint
from .elr import EarlyLearningTargets, elr_penalty
from .inference import best_temperature, inference_copy, predict_logits, view_logits
from .networks import ModelSpec, ResNet, build_model, cpu_state_dict, memory_format
from .settings import SELECT_BY, TrainConfig

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
    unlabeled_rows: np.ndarray  # rounding below 0 outside the test split (left-out unsures, pruned labels)


def prepare_training_data(image_set: ImageSet, scheme: LabelScheme, val_frac: float, seed: int,
                          holdout: np.ndarray | None = None) -> TrainingData:
    """Rounded annotations >= 0 outside the test split are trainable; a stratified val_frac of them validates.

    `holdout` (a boolean mask) keeps more rows out of training and validation: a cross-validation fold.
    """
    ann = image_set.ann
    rounded = round_annotations(ann["annotation"])
    test = test_mask(ann)
    excluded = flag_column(ann, "exclude")  # set in the review widget: seen, but kept out of training
    if holdout is not None:
        excluded = excluded | holdout
    trainable = np.flatnonzero((rounded >= 0) & ~test & ~excluded)
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
    split = np.where(test, "test", "train").astype(object)
    split[val_rows] = "val"
    certain = np.isclose(ann["annotation"].to_numpy(dtype=float), rounded)
    unlabeled = np.flatnonzero((rounded < 0) & ~test & ~excluded)
    return TrainingData(class_values, [scheme.name_of(v) for v in class_values], targets,
                        np.sort(train_rows), np.sort(val_rows), split, certain, unlabeled)


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

def train_one_epoch(model: nn.Module, images: Images, rows: np.ndarray, targets: np.ndarray,
                    optimizer: torch.optim.Optimizer, criterion: nn.Module, *, cfg: TrainConfig, epoch: int,
                    weights: np.ndarray | None = None, scheduler: LRScheduler | None = None,
                    soft: np.ndarray | None = None, unlabeled: np.ndarray | None = None,
                    elr: EarlyLearningTargets | None = None) -> dict:
    """One pass over `rows`; with `weights` or `soft` (see soft_targets: those rows' loss is the
    cross-entropy with their target distribution) the criterion must give per-row losses
    (reduction "none"). With `unlabeled` rows, each batch also takes its share of them, once per
    epoch, for consistency_loss. With `elr`, the loss also has ELR's penalty (model.elr). The scheduler, if
    any, steps after every batch;
    with `cfg.amp` on CUDA the forward passes run under bf16 autocast."""
    device = cfg.torch_device
    fmt = memory_format(cfg.width, device)
    model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(rows)  # resumable: depends on (seed, epoch) only
    augmentation = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # likewise
    batches = batch_bounds(len(order), cfg.batch_size)
    unlabeled_batches = _unlabeled_batches(unlabeled, len(batches), cfg, epoch)
    total_loss, seen, pseudo_labelled, start = 0.0, 0, 0, time.perf_counter()
    for k, (b, e) in enumerate(progress_bar(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress)):
        idx = np.sort(order[b:e])  # sorted reads are faster on a memmap; order within a batch is irrelevant
        x = augment_batch(image_batch(images, idx, device, fmt), cfg.augment, augmentation)
        y = torch.from_numpy(targets[idx]).to(device)
        soft_b, w_b = (None if a is None else torch.from_numpy(a[idx]).to(device) for a in (soft, weights))
        mix = (draw_mix(len(idx), cfg.mixup_alpha, np.random.default_rng([cfg.seed, epoch, 2, k]), device)
               if cfg.mixup_alpha else None)  # resumable too: depends on (seed, epoch, batch) only
        with autocast(cfg):
            logits = model(x if mix is None else mix_inputs(x, mix)).float()
            loss = mixed_loss(logits, y, criterion, soft_b, w_b, mix)
            if elr is not None:  # never with MixUp (TrainConfig refuses it): these are the rows' own logits
                loss = loss + cfg.elr_lambda * elr_penalty(logits, elr.update(logits, idx))
            if unlabeled_batches and len(unlabeled_batches[k]):
                x_u = image_batch(images, unlabeled_batches[k], device, fmt)
                loss_u, confident = consistency_loss(model, x_u, cfg, augmentation)
                loss, pseudo_labelled = loss + cfg.consistency_weight * loss_u, pseudo_labelled + confident
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(idx)
        seen += len(idx)
    out = {"train_loss": total_loss / max(seen, 1), "images": seen, "seconds": time.perf_counter() - start}
    if unlabeled_batches:
        out["pseudo_labelled"] = pseudo_labelled / max(len(unlabeled), 1)  # share of the unlabeled rows this epoch
    return out


def batch_loss(logits: torch.Tensor, y: torch.Tensor, criterion: nn.Module, soft: torch.Tensor | None,
               weights: torch.Tensor | None) -> torch.Tensor:
    """A batch's loss on its labels: with `weights` or `soft` (rows with a target distribution take the
    cross-entropy with it) the weighted mean of the criterion's per-row losses; else the criterion's own."""
    loss = criterion(logits, y)
    if soft is not None:
        loss = with_soft_targets(loss, logits, soft)
    if weights is not None or soft is not None:
        w = weights if weights is not None else torch.ones_like(loss)
        loss = (loss * w).sum() / w.sum().clamp_min(1e-8)
    return loss


def mixed_loss(logits: torch.Tensor, y: torch.Tensor, criterion: nn.Module, soft: torch.Tensor | None,
               weights: torch.Tensor | None, mix: Mix | None) -> torch.Tensor:
    """batch_loss; after MixUp, the mix of the loss against the rows' own labels and against their
    partners' labels, in the drawn proportion."""
    loss = batch_loss(logits, y, criterion, soft, weights)
    if mix is None:
        return loss
    p = mix.partner
    partners = batch_loss(logits, y[p], criterion, None if soft is None else soft[p],
                          None if weights is None else weights[p])
    return mix.share * loss + (1 - mix.share) * partners


def autocast(cfg: TrainConfig) -> torch.autocast:
    """bf16 autocast where `cfg.amp` asks for it and the device is a GPU; a no-op otherwise."""
    device = cfg.torch_device
    return torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each training batch of an epoch: batch_size rows each, the last one fewer, except
    that a last batch of one row joins the one before it (BatchNorm cannot train on a single row)."""
    starts = list(range(0, n_rows, batch_size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, [*starts[1:], n_rows]))


def _unlabeled_batches(unlabeled: np.ndarray | None, n_batches: int, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    """The unlabeled rows in a (seed, epoch) order, split into one sorted share per training batch."""
    if unlabeled is None or not len(unlabeled) or not n_batches:
        return []
    order = np.random.default_rng([cfg.seed, epoch, 1]).permutation(unlabeled)
    return [np.sort(part) for part in np.array_split(order, n_batches)]


def consistency_loss(model: nn.Module, x: torch.Tensor, cfg: TrainConfig,
                     generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """FixMatch's loss on unlabeled images (Sohn et al. 2020): where the prediction on a weakly
    augmented view (the recipe's `augment`) is at least `pseudo_threshold` confident, that class
    is the target of a strongly augmented view (augment.strong_augment); the mean over the batch,
    and how many images were confident enough."""
    with torch.no_grad():
        probs = torch.softmax(model(augment_batch(x, cfg.augment, generator)), 1)
    confidence, pseudo = probs.max(1)
    mask = confidence >= cfg.pseudo_threshold
    if not mask.any():  # nothing to learn from: skip the strong view's forward pass
        return torch.zeros((), device=x.device), 0
    per_row = F.cross_entropy(model(strong_augment(x, generator)), pseudo, reduction="none")
    return (per_row * mask).sum() / len(x), int(mask.sum())


def evaluate(model: nn.Module, images: Images, rows: np.ndarray, targets: np.ndarray,
             criterion: nn.Module, cfg: TrainConfig, *, certain: np.ndarray | None = None,
             positive: int | None = None, soft: np.ndarray | None = None) -> dict:
    """Validation loss and accuracy; `criterion` must live on the CPU, where the logits are gathered.
    With `certain` (a mask per row), also accuracy and ROC AUC (class index `positive` against the
    rest) on the certain validation rows: scores that relabeled unsures cannot sway. With `soft`
    (see soft_targets) the loss of those rows is taken against their target distribution, as in training."""
    logits = predict_logits(inference_copy(model), images, rows, cfg.torch_device, cfg.eval_batch_size, amp=cfg.amp)[0]
    return validation_scores(logits, targets[rows], criterion, certain=None if certain is None else certain[rows],
                             positive=positive, soft=None if soft is None else soft[rows])


def validation_scores(logits: torch.Tensor, targets: np.ndarray, criterion: nn.Module, *,
                      certain: np.ndarray | None = None, positive: int | None = None,
                      soft: np.ndarray | None = None) -> dict:
    """evaluate's scores from the validation rows' logits (N, classes) and their `targets`, `certain`
    mask and `soft` target distributions (each per validation row)."""
    y = torch.from_numpy(targets)
    with torch.inference_mode():
        if soft is not None and len(y):
            per_row = with_soft_targets(F.cross_entropy(logits, y, reduction="none"), logits, torch.from_numpy(soft))
            loss = float(per_row.mean())
        else:
            loss = float(criterion(logits, y)) if len(y) else float("nan")
    accuracy = float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")
    scores = {"val_loss": loss, "val_accuracy": accuracy}
    if certain is not None:
        hits = (logits.argmax(1) == y).numpy()[certain]
        scores["val_accuracy_certain"] = float(hits.mean()) if len(hits) else float("nan")
        is_pos = (y.numpy() == positive)[certain]
        scores["val_roc_auc_certain"] = (
            float(roc_auc_score(is_pos, torch.softmax(logits, 1)[:, positive].numpy()[certain]))
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
    batch_size: int = 0  # the batch size and learning rate it trained with (see for_training_rows)
    lr: float = 0.0
    ensemble: list[ResNet] = field(default_factory=list)  # when given, predictions are their mean (co-training's pair)

    @property
    def predictors(self) -> list[ResNet]:
        """The models whose mean output is the fit's prediction."""
        return self.ensemble or [self.model]


@dataclass
class Training:
    """What one fit trains with, set up once before the loop: its rows, model, optimizer and losses."""

    cfg: TrainConfig  # as given, but with the batch size and learning rate this set trains with (for_training_rows)
    data: TrainingData
    images: Images  # the image set's array, or its copy on the device (batches.on_device)
    spec: ModelSpec
    model: ResNet
    forward: nn.Module  # the model, or its torch.compile'd wrapper (cfg.compile), for training steps
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    train_criterion: nn.Module  # on the model's device; per-row losses with weights or soft targets
    val_criterion: nn.Module  # on the CPU, where evaluate() gathers the logits
    weights: np.ndarray | None
    soft: np.ndarray | None
    unlabeled: np.ndarray | None  # rows trained by consistency (cfg.unlabeled), else None
    elr: EarlyLearningTargets | None = None  # each row's running average of its predictions (cfg.elr_lambda)


@dataclass
class Progress:
    """Where the loop stands: the next epoch, the history so far and the best epoch so far."""

    start_epoch: int = 0
    history: list[dict] | None = None
    best: dict | None = None
    fingerprint: str = ""  # of the run, when it writes or reads a checkpoint
    resumed_from: Path | None = None

    def __post_init__(self) -> None:
        self.history = [] if self.history is None else self.history
        self.best = {"score": float("-inf"), "epoch": -1, "state": None} if self.best is None else self.best


def setup_training(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig,
                   holdout: np.ndarray | None = None) -> Training:
    """The rows, model (normalised on the training rows), optimizer, schedule and losses of a fit."""
    data = prepare_training_data(image_set, scheme, cfg.val_frac, cfg.seed, holdout)
    cfg = for_training_rows(cfg, len(data.train_rows))
    weights = sample_weights(image_set, cfg)
    soft = soft_targets(image_set, data)
    images, device = image_set.images, cfg.torch_device
    spec = ModelSpec(cfg.arch, int(images.shape[1]), data.class_names, data.class_values, cfg.width,
                     list(images.shape[2:]), tta=cfg.tta, tta_views=cfg.tta_views)
    model = build_model(spec)
    if cfg.normalize:
        model.set_normalization(*map(torch.from_numpy, channel_stats(images, data.train_rows)))
    model, forward, optimizer, scheduler = ready_to_train(model, cfg, len(data.train_rows))
    train_targets = data.targets[data.train_rows]
    # Two loss modules: sharing one and moving it between devices would leave class weights behind.
    train_criterion = make_criterion(cfg, train_targets, spec.n_classes,
                                     reduction="mean" if weights is None and soft is None else "none").to(device)
    val_criterion = make_criterion(cfg, train_targets, spec.n_classes)
    unlabeled = data.unlabeled_rows if cfg.unlabeled == "consistency" else None
    elr = EarlyLearningTargets(len(data.targets), spec.n_classes, cfg.elr_beta, device) if cfg.elr_lambda else None
    return Training(cfg, data, cfg.device_images(images), spec, model, forward, optimizer,
                    scheduler, train_criterion, val_criterion, weights, soft, unlabeled, elr)


def ready_to_train(model: ResNet, cfg: TrainConfig, n_train: int
                   ) -> tuple[ResNet, nn.Module, torch.optim.Optimizer, LRScheduler | None]:
    """A built (and normalised) model on the training device, its training forward (torch.compile'd
    with cfg.compile), its optimizer and its learning-rate schedule for `n_train` training rows."""
    device = cfg.torch_device
    model = model.to(device, memory_format=memory_format(cfg.width, device))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=len(batch_bounds(n_train, cfg.batch_size)))
    return model, torch.compile(model) if cfg.compile else model, optimizer, scheduler


def for_training_rows(cfg: TrainConfig, n_train: int) -> TrainConfig:
    """The config a set of `n_train` training rows trains with: as given, unless `min_steps_per_epoch`
    asks for more batches per epoch than batch_size allows (then batches of n_train // min_steps_per_epoch
    rows, at least 1, and the learning rate scaled by the same factor: Goyal et al. 2017's linear rule),
    or `epochs` of those batches come to fewer than `min_steps` optimizer steps (then more epochs)."""
    if cfg.min_steps_per_epoch and n_train // cfg.batch_size < cfg.min_steps_per_epoch:
        batch = max(1, n_train // cfg.min_steps_per_epoch)
        cfg = replace(cfg, batch_size=batch, lr=cfg.lr * batch / cfg.batch_size)
    steps_per_epoch = len(batch_bounds(n_train, cfg.batch_size))
    if cfg.min_steps and cfg.epochs * steps_per_epoch < cfg.min_steps:
        cfg = replace(cfg, epochs=math.ceil(cfg.min_steps / max(steps_per_epoch, 1)))
    return cfg


def resume_progress(training: Training, image_set: ImageSet, cfg: TrainConfig, checkpoint_path: Path | None,
                    holdout: np.ndarray | None) -> Progress:
    """A fresh start, or the progress of this very run's checkpoint (`cfg.resume_from`)."""
    resume_from = Path(cfg.resume_from) if cfg.resume_from is not None else None
    # only runs that write or read a checkpoint need to know what made them
    fingerprint = training_fingerprint(image_set, cfg, holdout) if checkpoint_path or resume_from else ""
    restored = (load_checkpoint(resume_from, training.model, training.optimizer, training.scheduler, fingerprint)
                if resume_from else None)
    if restored is None:
        return Progress(fingerprint=fingerprint)
    start_epoch, history, best = restored
    return Progress(start_epoch, history, best, fingerprint, resume_from)


def run_epochs(training: Training, image_set: ImageSet, cfg: TrainConfig, progress: Progress,
               checkpoint_path: Path | None) -> bool:
    """Train from `progress` to the last epoch (or early stop), tracking the best validation score;
    True when patience stopped it early."""
    data, model, images = training.data, training.model, training.images
    column, sign = SELECT_BY[cfg.select_by]
    on_certain = ({"certain": data.certain, "positive": _index_or_none(data.class_values, POSITIVE_VALUE)}
                  if cfg.select_by != "val_loss" else {})
    for epoch in range(progress.start_epoch, cfg.epochs):
        row = {"epoch": epoch + 1,
               **train_one_epoch(training.forward, images, data.train_rows, data.targets, training.optimizer,
                                 training.train_criterion, cfg=cfg, epoch=epoch, weights=training.weights,
                                 scheduler=training.scheduler, soft=training.soft, unlabeled=training.unlabeled,
                                 elr=training.elr),
               **evaluate(model, images, data.val_rows, data.targets, training.val_criterion, cfg, **on_certain,
                          soft=training.soft)}
        check_finite(row, image_set, cfg)  # stop before a NaN checkpoint replaces a good one
        progress.history.append(row)
        report_epoch(row, cfg)
        if sign * row[column] > progress.best["score"]:
            progress.best = {"score": sign * row[column], "epoch": epoch, "state": cpu_state_dict(model)}
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, training.optimizer, training.scheduler, epoch,
                            history=progress.history, best=progress.best, fingerprint=progress.fingerprint)
        if cfg.patience and epoch - progress.best["epoch"] >= cfg.patience:
            return True
    return False


def check_finite(row: dict, image_set: ImageSet, cfg: TrainConfig) -> None:
    """Refuse to go on from an epoch whose training loss is not a number."""
    if not math.isfinite(row["train_loss"]):
        raise NotTrainable(image_set.pair.ann, f"training loss became {row['train_loss']} in epoch {row['epoch']} "
                                               f"(lr {cfg.lr:g}); lower lr or check the images")


def report_epoch(row: dict, cfg: TrainConfig) -> None:
    """One line per epoch (with cfg.progress); a co-training epoch also says the share of labels kept."""
    if cfg.progress:
        kept = f"  labelled {row['labelled_share']:.0%}" if not pd.isna(row.get("labelled_share", np.nan)) else ""
        print(f"epoch {row['epoch']:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f}  "
              f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}  "
              f"{row['images'] / row['seconds']:.0f} img/s{kept}", flush=True)


def fit(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, checkpoint_path: Path | None = None,
        holdout: np.ndarray | None = None) -> FitResult:
    """Train on the image set's trainable rows (minus `holdout`); keep the weights of the best
    validation score (`select_by`; or of the last epoch, as the origin did, with keep_weights="last"),
    then fit the softmax temperature on the validation rows when `calibrate` asks for it."""
    torch.manual_seed(cfg.seed)
    with explain_out_of_memory(cfg):
        training = setup_training(image_set, scheme, cfg, holdout)
        cfg = training.cfg
        progress = resume_progress(training, image_set, cfg, checkpoint_path, holdout)
        stopped_early = run_epochs(training, image_set, cfg, progress, checkpoint_path)
    model, spec, data = training.model, training.spec, training.data
    kept_epoch = len(progress.history)
    if cfg.keep_weights == "best" and progress.best["state"] is not None:
        model.load_state_dict(progress.best["state"])
        kept_epoch = progress.best["epoch"] + 1
    if cfg.calibrate:
        spec.temperature = fit_temperature(model, training.images, data.val_rows, data.targets, cfg)
    frame = pd.DataFrame(progress.history)
    seconds = float(frame["seconds"].sum()) if len(frame) else 0.0
    images_seen = float(frame["images"].sum()) if len(frame) else 0.0
    return FitResult(model.cpu(), spec, data, frame, kept_epoch, seconds,
                     images_seen / seconds if seconds else 0.0, stopped_early, progress.resumed_from,
                     cfg.batch_size, cfg.lr)


@contextmanager
def explain_out_of_memory(cfg: TrainConfig) -> Iterator[None]:
    """Turn a GPU's out-of-memory error into one that names the batch sizes and what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ParameterError("batch_size", f"{cfg.torch_device} ran out of memory at batch_size {cfg.batch_size} "
                             f"(predictions: eval_batch_size {cfg.eval_batch_size}; images_on_device "
                             f"{cfg.images_on_device!r}): lower batch_size, or set images_on_device: no to keep the "
                             "images in host memory") from None


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


def fit_temperature(model: ResNet, images: Images, rows: np.ndarray, targets: np.ndarray,
                    cfg: TrainConfig) -> float:
    """The softmax temperature that best fits the validation rows, over the views the model predicts from."""
    if not len(rows):
        return 1.0
    logits = view_logits(inference_copy(model), images, rows, cfg.torch_device, cfg.eval_batch_size, amp=cfg.amp)
    return best_temperature(logits, targets[rows])
