"""Co-training on noisy labels in the manner of DivideMix (Li, Socher and Hoi 2020): two networks
divide the training rows for each other, and every image is learned from, labelled or not.

After `cotrain_warmup` epochs on every label, each epoch starts from both networks' predictions of
every trainable, unlabeled and validation row. A two-component Gaussian mixture on each network's
per-row loss, fitted within each given class (so a rare class's harder images are not called wrong
wholesale), gives every row its probability of a clean label. The rows the *other* network calls
clean (`cotrain_threshold`) keep their label (co-divide: neither network confirms its own mistakes);
the rest join the unlabeled rows (the unsures and the labels a strategy pruned). A labelled row
trains towards its label blended with the network's own prediction by that probability
(co-refinement), an unlabeled row towards the pair's mean prediction (co-guessing), both sharpened
(`cotrain_sharpen`), with MixUp across the two sets (`cotrain_mixup`); the unlabeled rows' loss
weighs `cotrain_unlabeled_weight`, ramped up linearly over the co-training epochs as DivideMix ramps
it (the guesses of the first epochs after the warm-up are the weakest). The fit predicts with the
mean of the pair.

Where it departs from DivideMix, and why: the targets come from the pass at each epoch's start on
the images as they are, not from augmented views per batch (one pass per network and epoch instead
of four forward passes per batch: the cost stays near four plain fits on a CPU); the unlabeled rows
are spread over the epoch's batches, so every epoch has the recipe's number of steps and its
learning-rate schedule holds; the unlabeled loss is cross-entropy with the guesses, not squared
error; and there is no uniform-prior penalty (these classes are not balanced). A co-training fit
writes no checkpoint (it starts afresh when run again).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.mixture import GaussianMixture

from ..core.labels import POSITIVE_VALUE, LabelScheme
from ..core.progress import progress_bar
from ..data.sets import ImageSet
from .augment import Mix, augment_batch, draw_mix, mix_inputs
from .batches import Images, image_batch
from .inference import inference_copy, predict_logits
from .networks import build_model, cpu_state_dict, memory_format
from .settings import SELECT_BY, TrainConfig
from .training import (
    FitResult,
    Training,
    autocast,
    batch_bounds,
    check_finite,
    explain_out_of_memory,
    fit_temperature,
    ready_to_train,
    report_epoch,
    setup_training,
    train_one_epoch,
    validation_scores,
)

MIN_ROWS_TO_DIVIDE = 8  # a class with fewer training rows keeps every label: too few for a mixture
PARTNER_SEED = 7_919  # the second network's seed offset: its own initial weights and batch order


# ---------------------------------------------------------------- the pieces

def clean_probability(losses: np.ndarray, groups: np.ndarray | None = None, *, seed: int = 0) -> np.ndarray:
    """Per row, the posterior of the low-loss component of a two-component Gaussian mixture fitted to
    the (min-max normalised) losses, within each of `groups` (e.g. the given class) when given. A group
    too small (MIN_ROWS_TO_DIVIDE) or too uniform to split is called clean."""
    losses = np.asarray(losses, dtype=float)
    groups = np.zeros(len(losses), int) if groups is None else np.asarray(groups)
    clean = np.ones(len(losses))
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        clean[rows] = _clean_within(losses[rows], seed)
    return clean


def _clean_within(losses: np.ndarray, seed: int) -> np.ndarray:
    spread = float(np.ptp(losses)) if len(losses) else 0.0
    if len(losses) < MIN_ROWS_TO_DIVIDE or spread < 1e-8:
        return np.ones(len(losses))
    x = ((losses - losses.min()) / spread).reshape(-1, 1)
    mixture = GaussianMixture(2, max_iter=20, tol=1e-2, reg_covar=5e-4, random_state=seed).fit(x)
    return mixture.predict_proba(x)[:, int(np.argmin(mixture.means_.ravel()))]


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Each row's distribution raised to 1 / temperature and renormalised (temperature 1: as it is)."""
    powered = np.power(np.clip(probs, 1e-12, 1.0), 1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def co_guess(own: np.ndarray, other: np.ndarray, temperature: float) -> np.ndarray:
    """The target of an unlabeled row: the two networks' mean prediction, sharpened."""
    return sharpen((own + other) / 2, temperature)


def refine_labels(given: np.ndarray, own: np.ndarray, clean: np.ndarray, temperature: float) -> np.ndarray:
    """The target of a labelled row: its given label distribution blended with the network's own
    prediction by the row's clean probability, sharpened."""
    w = np.asarray(clean, dtype=float)[:, None]
    return sharpen(w * given + (1 - w) * own, temperature)


@dataclass(frozen=True)
class Division:
    """What one network trains on in an epoch, as the other network divided it."""

    clean: np.ndarray  # per training row (in TrainingData.train_rows order): probability of a clean label
    labelled: np.ndarray  # the training rows that keep their label
    unlabeled: np.ndarray  # the training rows that lost it, and the rows that never had one


def divide(probs: np.ndarray, targets: np.ndarray, train_rows: np.ndarray, pool: np.ndarray, *,
           threshold: float, seed: int) -> Division:
    """The division one network's predictions (`probs`, rows x classes, every row) make of the
    training rows: by the loss mixture of each given class (targets: class index per row)."""
    given = targets[train_rows]
    losses = -np.log(np.clip(probs[train_rows, given], 1e-12, 1.0))
    clean = clean_probability(losses, given, seed=seed)
    keep = clean >= threshold
    return Division(clean, train_rows[keep], np.sort(np.concatenate([train_rows[~keep], pool])))


def unlabeled_ramp(epoch: int, warmup: int, epochs: int) -> float:
    """The share of cotrain_unlabeled_weight an epoch (0-based) uses: 1 / (epochs - warmup) at the first
    co-training epoch, rising linearly to 1 at the last."""
    return min(1.0, max(0.0, (epoch - warmup + 1) / max(epochs - warmup, 1)))


def given_distributions(targets: np.ndarray, n_classes: int, soft: np.ndarray | None) -> np.ndarray:
    """Each row's label as a distribution: one-hot of its class, or its soft target where it has one."""
    given = np.zeros((len(targets), n_classes), np.float64)
    labelled = targets >= 0
    given[np.flatnonzero(labelled), targets[labelled]] = 1.0
    if soft is not None:
        has_soft = np.isfinite(soft[:, 0])
        given[has_soft] = soft[has_soft]
    return given


# ---------------------------------------------------------------- the loop

def partner(first: Training) -> Training:
    """A second network for the same rows: its own initial weights and batch order (seed + PARTNER_SEED),
    the same input normalisation, its own optimizer and schedule."""
    cfg = replace(first.cfg, seed=first.cfg.seed + PARTNER_SEED)
    torch.manual_seed(cfg.seed)
    model = build_model(first.spec)
    model.set_normalization(first.model.mean.cpu(), first.model.std.cpu())
    model, forward, optimizer, scheduler = ready_to_train(model, cfg, len(first.data.train_rows))
    return replace(first, cfg=cfg, model=model, forward=forward, optimizer=optimizer, scheduler=scheduler)


def pass_probabilities(pair: list[Training], images: Images, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Both networks' softmax outputs, (2, n_rows, classes), on `rows` (sorted) of the images as they
    are; the other rows stay NaN."""
    cfg = pair[0].cfg
    out = np.full((2, n_rows, pair[0].spec.n_classes), np.nan)
    for k, training in enumerate(pair):
        logits = predict_logits(inference_copy(training.model), images, rows, cfg.torch_device, cfg.eval_batch_size,
                                amp=cfg.amp)[0]
        out[k, rows] = torch.softmax(logits, 1).numpy()
    return out


def cotrain_epoch(training: Training, images: Images, targets: np.ndarray, weights: np.ndarray, division: Division,
                  *, epoch: int, net: int) -> dict:
    """One epoch of one network on `division`: every labelled and unlabeled row once, spread over the
    recipe's number of batches, each batch mixed (MixUp) and trained towards `targets` (rows x classes)
    with the rows' `weights` (labelled rows against unlabeled ones)."""
    cfg = training.cfg
    device = cfg.torch_device
    fmt = memory_format(cfg.width, device)
    n_batches = len(batch_bounds(len(training.data.train_rows), cfg.batch_size))
    rng = np.random.default_rng([cfg.seed, epoch, 3, net])
    parts = zip(np.array_split(rng.permutation(division.labelled), n_batches),
                np.array_split(rng.permutation(division.unlabeled), n_batches))
    augmentation = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    labelled_mask = np.zeros(len(targets), bool)
    labelled_mask[division.labelled] = True
    unlabeled_weight = cfg.cotrain_unlabeled_weight * unlabeled_ramp(epoch, cfg.cotrain_warmup, cfg.epochs)
    model = training.forward
    model.train()
    total, seen, start = 0.0, 0, time.perf_counter()
    for k, (lab, unl) in enumerate(progress_bar(list(parts), desc=f"epoch {epoch + 1}/{cfg.epochs} (net {net + 1})",
                                                enabled=cfg.progress)):
        idx = np.sort(np.concatenate([lab, unl]))
        if len(idx) >= 2:  # BatchNorm cannot train on a single row
            x = augment_batch(image_batch(images, idx, device, fmt), cfg.augment, augmentation)
            t = torch.from_numpy(targets[idx]).float().to(device)
            w = torch.from_numpy(weights[idx]).float().to(device)
            is_lab = torch.from_numpy(labelled_mask[idx]).to(device)
            if cfg.cotrain_mixup:
                drawn = draw_mix(len(idx), cfg.cotrain_mixup, np.random.default_rng([cfg.seed, epoch, 4, net, k]), device)
                mix = Mix(max(drawn.share, 1 - drawn.share), drawn.partner)  # each row stays mostly itself
                x, t = mix_inputs(x, mix), mix.share * t + (1 - mix.share) * t[mix.partner]
            with autocast(cfg):
                per_row = -(t * F.log_softmax(model(x).float(), 1)).sum(1) * w
            loss = _part_mean(per_row, is_lab) + unlabeled_weight * _part_mean(per_row, ~is_lab)
            training.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            training.optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        if training.scheduler is not None:
            training.scheduler.step()
    return {"train_loss": total / max(seen, 1), "images": seen, "seconds": time.perf_counter() - start,
            "labelled_share": len(division.labelled) / max(len(training.data.train_rows), 1)}


def _part_mean(per_row: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return per_row[mask].mean() if mask.any() else per_row.sum() * 0.0


def epoch_targets(probs: np.ndarray, given: np.ndarray, net: int, division: Division, train_rows: np.ndarray,
                  cfg: TrainConfig) -> np.ndarray:
    """Every row's target for network `net` this epoch: refined labels on its labelled rows, the pair's
    co-guess on its unlabeled ones (rows x classes; zero elsewhere)."""
    targets = np.zeros_like(given)
    own, other = probs[net], probs[1 - net]
    clean = pd.Series(division.clean, index=train_rows)
    lab, unl = division.labelled, division.unlabeled
    targets[lab] = refine_labels(given[lab], own[lab], clean.loc[lab].to_numpy(), cfg.cotrain_sharpen)
    targets[unl] = co_guess(own[unl], other[unl], cfg.cotrain_sharpen)
    return targets


Observer = Callable[[int, list[Division], list[np.ndarray]], None]


def fit_cotrain(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, checkpoint_path: Path | None = None,
                holdout: np.ndarray | None = None, *, observe: Observer | None = None) -> FitResult:
    """Co-train two networks on the image set's trainable rows, with its unlabeled rows (rounding below
    0) as their unlabeled pool; keep the pair of the last epoch (as DivideMix), or with cotrain_keep="best"
    of the epoch with the best validation score of their mean (`select_by`). `checkpoint_path` is
    accepted and unused. `observe(epoch, divisions, targets)`, when given, sees each co-training
    epoch's division and targets per network (row indices of the image set) before it trains."""
    torch.manual_seed(cfg.seed)
    with explain_out_of_memory(cfg):
        first = setup_training(image_set, scheme, cfg, holdout)
        pair = [first, partner(first)]
        cfg = first.cfg
        history, best = _run_cotrain(pair, image_set, cfg, observe)
    data = first.data
    kept_epoch = len(history)
    if cfg.cotrain_keep == "best" and best["states"] is not None:
        for training, state in zip(pair, best["states"]):
            training.model.load_state_dict(state)
        kept_epoch = best["epoch"] + 1
    if cfg.calibrate:  # one temperature for the pair, fitted on the first network's outputs
        first.spec.temperature = fit_temperature(first.model, first.images, data.val_rows, data.targets, cfg)
    frame = pd.DataFrame(history)
    seconds = float(frame["seconds"].sum())
    models = [training.model.cpu() for training in pair]
    return FitResult(models[0], first.spec, data, frame, kept_epoch, seconds,
                     float(frame["images"].sum()) / seconds if seconds else 0.0, False, None,
                     cfg.batch_size, cfg.lr, ensemble=models)


def _run_cotrain(pair: list[Training], image_set: ImageSet, cfg: TrainConfig,
                 observe: Observer | None) -> tuple[list[dict], dict]:
    first = pair[0]
    data, images = first.data, first.images
    pool = data.unlabeled_rows
    predicted = np.sort(np.concatenate([data.train_rows, pool, data.val_rows]))
    given = given_distributions(data.targets, first.spec.n_classes, first.soft)
    # the loss weight of each row: its sample weight, 1 for the rows that never had a label
    row_weights = np.ones(len(data.targets)) if first.weights is None else first.weights.astype(float)
    row_weights[pool] = 1.0
    positive = data.class_values.index(POSITIVE_VALUE) if POSITIVE_VALUE in data.class_values else None
    column, sign = SELECT_BY[cfg.select_by]
    history, best, probs = [], {"score": -math.inf, "epoch": -1, "states": None}, None
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        if epoch < cfg.cotrain_warmup:
            rows = [train_one_epoch(t.forward, images, data.train_rows, data.targets, t.optimizer, t.train_criterion,
                                    cfg=t.cfg, epoch=epoch, weights=t.weights, scheduler=t.scheduler, soft=t.soft)
                    for t in pair]
        else:
            # network k trains on the division the other network's predictions make (co-divide)
            divisions = [divide(probs[1 - k], data.targets, data.train_rows, pool, threshold=cfg.cotrain_threshold,
                                seed=cfg.seed) for k in range(2)]
            targets = [epoch_targets(probs, given, k, divisions[k], data.train_rows, cfg) for k in range(2)]
            if observe is not None:
                observe(epoch, divisions, targets)
            rows = [cotrain_epoch(t, images, targets[k], row_weights, divisions[k], epoch=epoch, net=k)
                    for k, t in enumerate(pair)]
        probs = pass_probabilities(pair, images, predicted, len(data.targets))
        row = {"epoch": epoch + 1, "train_loss": float(np.mean([r["train_loss"] for r in rows])),
               "images": sum(r["images"] for r in rows), "seconds": time.perf_counter() - start,
               **({"labelled_share": float(np.mean([r["labelled_share"] for r in rows]))} if epoch >= cfg.cotrain_warmup
                  else {}),
               **_pair_validation(probs, data, first, positive)}
        check_finite(row, image_set, cfg)
        history.append(row)
        report_epoch(row, cfg)
        if sign * row[column] > best["score"]:
            best = {"score": sign * row[column], "epoch": epoch, "states": [cpu_state_dict(t.model) for t in pair]}
    return history, best


def _pair_validation(probs: np.ndarray, data, first: Training, positive: int | None) -> dict:
    """The validation scores of the pair's mean prediction."""
    rows = data.val_rows
    logits = torch.from_numpy(np.log(np.clip(probs[:, rows].mean(axis=0), 1e-12, 1.0))).float()
    return validation_scores(logits, data.targets[rows], first.val_criterion, certain=data.certain[rows],
                             positive=positive, soft=None if first.soft is None else first.soft[rows])
