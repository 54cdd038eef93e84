"""Out-of-fold predictions: every trainable image scored by a model that never saw it.

The origin calls an image "wrong" from the outputs of a model trained on that very image; a model
that has memorised its training set gets almost nothing wrong there. Out-of-fold (k-fold) outputs
come from a model trained on the other folds.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..core.checks import check_value, integer
from ..core.errors import NotTrainable
from ..core.labels import LabelScheme
from ..data.combine_split import group_values
from ..data.sets import ImageSet, Pair, open_image_set
from ..model.inference import predict_probabilities
from ..model.networks import ResNet
from ..model.settings import TrainConfig
from ..model.training import TrainingData, explain_out_of_memory, fit, prepare_training_data


@dataclass(frozen=True)
class FoldSettings:
    """Out-of-fold training: `folds` models, each trained without its fold, `jobs` of them at once;
    with `ensemble` the rows no fold trained on are predicted by the fold models' mean; with
    `group_by` (a column) each group lies wholly in one fold. Label issues are flagged from them by
    cleanlab, and by the labels of each image's `neighbors` nearest neighbours in the final model's
    feature space (`features`: of the image as it is, or the mean over its test-time views). Without
    `fold_models` no fold is trained: the run gets the neighbour flags only."""

    folds: int = 5
    jobs: int = 1
    ensemble: bool = False
    group_by: str = ""
    neighbors: int = 60
    features: str = "image"  # or "view_mean": see NEIGHBOUR_FEATURES
    fold_models: bool = True


def fold_assignment(targets: np.ndarray, folds: int, seed: int, path: str = "annotations", *,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index (0..folds-1) of every trainable row (target >= 0), stratified by class (and with
    `groups`, one value per row, every group in one fold); -1 elsewhere."""
    trainable = np.flatnonzero(targets >= 0)
    counts = np.bincount(targets[trainable])
    if len(trainable) < folds or counts[counts > 0].min() < folds:
        raise NotTrainable(path, f"out-of-fold predictions need at least {folds} training images of every class "
                                 f"(folds={folds}); the smallest class has {int(counts[counts > 0].min())}")
    fold = np.full(len(targets), -1)
    if groups is not None:
        held_groups = np.asarray(groups, dtype=object)[trainable]
        if len(set(held_groups)) < folds:
            raise NotTrainable(path, f"out-of-fold predictions that keep groups whole need at least {folds} groups "
                                     f"(folds={folds}); the training rows fall in {len(set(held_groups))}")
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            trainable, targets[trainable], held_groups)
    else:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(trainable, targets[trainable])
    for k, (_, held) in enumerate(splits):
        fold[trainable[held]] = k
    return fold


@dataclass
class FoldResult:
    """One fold model, its outputs on the rows it held out and on the rows no fold trained on."""

    model: ResNet
    train_rows: np.ndarray
    held_probs: np.ndarray  # (held-out rows, classes)
    unseen_probs: np.ndarray  # (rows no fold held out, classes): test, excluded, unlabeled


@dataclass
class OutOfFold:
    probs: np.ndarray  # (rows, classes) in the full model's class order; NaN where a row has no fold
    fold: np.ndarray  # fold per row, -1 for rows no fold held out (test, unlabeled, excluded)
    train_rows: list[np.ndarray]  # the rows each fold model trained on
    seconds: float
    models: list[ResNet]  # the fold models (on the CPU)
    ensemble_probs: np.ndarray  # with `ensemble`: the fold models' mean where fold == -1; NaN elsewhere


def _fold_outputs(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, holdout: np.ndarray,
                  unseen: np.ndarray, class_values: list[int]) -> FoldResult:
    """Train without the held-out rows, predict them and the `unseen` rows; probabilities in
    `class_values` order."""
    result = fit(image_set, scheme, cfg, holdout=holdout)
    rows = np.flatnonzero(holdout | unseen)
    with explain_out_of_memory(cfg):  # the fit kept the images on the device where cfg asks: its folds share them
        fold_probs = predict_probabilities(result.model, cfg.device_images(image_set.images), cfg.torch_device,
                                           cfg.eval_batch_size, rows, amp=cfg.amp)
    probs = np.zeros((len(rows), len(class_values)), np.float32)
    for j, value in enumerate(result.spec.class_values):  # a fold missing a class gives it probability 0
        probs[:, class_values.index(value)] = fold_probs[:, j]
    is_held = holdout[rows]
    return FoldResult(result.model.cpu(), result.data.train_rows, probs[is_held], probs[~is_held])


def _fold_in_process(pair: Pair, ann_dict: dict, cfg: TrainConfig, holdout: np.ndarray, unseen: np.ndarray,
                     class_values: list[int], threads: int) -> FoldResult:
    """_fold_outputs in a worker process, which opens the image set itself."""
    torch.set_num_threads(threads)
    scheme = LabelScheme.from_dict(ann_dict)
    return _fold_outputs(open_image_set(pair, scheme), scheme, cfg, holdout, unseen, class_values)


def out_of_fold_probabilities(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig,
                              settings: FoldSettings = FoldSettings()) -> OutOfFold:
    """Every trainable row's outputs from a model trained on the other folds (same config otherwise).

    With `jobs` > 1 the folds train in parallel processes, the CPU threads shared between them. With
    `ensemble` the fold models also predict the rows no fold held out (their mean: `ensemble_probs`).
    """
    folds, jobs, ensemble = settings.folds, settings.jobs, settings.ensemble
    check_value("folds", integer(2), folds)
    start = time.perf_counter()
    data: TrainingData = prepare_training_data(image_set, scheme, cfg.val_frac, cfg.seed)
    groups = group_values(image_set.ann, settings.group_by, image_set.pair.ann) if settings.group_by else None
    fold = fold_assignment(data.targets, folds, cfg.seed, str(image_set.pair.ann), groups=groups)
    fold_cfg = replace(cfg, resume_from=None, progress=False)
    holdouts = [fold == k for k in range(folds)]
    unseen = (fold < 0) if ensemble else np.zeros(len(fold), bool)  # predicted only when the mean is wanted
    if jobs > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_fold_in_process, [image_set.pair] * folds, [dict(scheme.ann_dict)] * folds,
                                    [fold_cfg] * folds, holdouts, [unseen] * folds, [data.class_values] * folds,
                                    [threads] * folds))
    else:
        results = []
        for k, holdout in enumerate(holdouts):
            if cfg.progress:
                print(f"fold {k + 1}/{folds}: training on {int((fold >= 0).sum() - holdout.sum())} images", flush=True)
            results.append(_fold_outputs(image_set, scheme, fold_cfg, holdout, unseen, data.class_values))
    probs = np.full((len(image_set), len(data.class_values)), np.nan, np.float32)
    for k, result in enumerate(results):
        probs[fold == k] = result.held_probs
    mean = np.full_like(probs, np.nan)
    mean[unseen] = np.mean([result.unseen_probs for result in results], axis=0)
    return OutOfFold(probs, fold, [result.train_rows for result in results], time.perf_counter() - start,
                     [result.model for result in results], mean)
