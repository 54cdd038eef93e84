"""Label quality beyond the seed: out-of-fold predictions and confident learning.

Seed 000 calls an image "wrong" from the outputs of a model trained on that very image; a model
that has memorised its training set gets almost nothing wrong there. Out-of-fold (k-fold) outputs
come from a model that never saw the image, and cleanlab's confident learning ranks label issues
from them.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from .datasets import ImageSet, Pair, flag_values, open_image_set
from .errors import NotTrainable, ParameterError
from .evaluation import WRONG_FROM, own_class_scores, score_column
from .labels import LabelScheme, round_annotations
from .training import TrainConfig, TrainingData, fit, inference_copy, predict_logits, prepare_training_data


def fold_assignment(targets: np.ndarray, folds: int, seed: int, path: str = "annotations") -> np.ndarray:
    """Fold index (0..folds-1) of every trainable row (target >= 0), stratified by class; -1 elsewhere."""
    trainable = np.flatnonzero(targets >= 0)
    counts = np.bincount(targets[trainable])
    if len(trainable) < folds or counts[counts > 0].min() < folds:
        raise NotTrainable(path, f"out-of-fold predictions need at least {folds} training images of every class "
                                 f"(folds={folds}); the smallest class has {int(counts[counts > 0].min())}")
    fold = np.full(len(targets), -1)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(trainable, targets[trainable])):
        fold[trainable[held]] = k
    return fold


@dataclass
class OutOfFold:
    probs: np.ndarray  # (rows, classes) in the full model's class order; NaN where a row has no fold
    fold: np.ndarray  # fold per row, -1 for rows no fold held out (test, unlabeled, excluded)
    train_rows: list[np.ndarray]  # the rows each fold model trained on
    seconds: float


def _fold_outputs(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, holdout: np.ndarray,
                  class_values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Train without the held-out rows, predict them; probabilities in `class_values` order."""
    result = fit(image_set, scheme, cfg, holdout=holdout)
    rows = np.flatnonzero(holdout)
    logits = predict_logits(inference_copy(result.model), image_set.images, rows, cfg.torch_device, cfg.eval_batch_size)
    fold_probs = torch.softmax(logits, 1).numpy()
    probs = np.zeros((len(rows), len(class_values)), np.float32)
    for j, value in enumerate(result.spec.class_values):  # a fold missing a class gives it probability 0
        probs[:, class_values.index(value)] = fold_probs[:, j]
    return probs, result.data.train_rows


def _fold_in_process(pair: Pair, ann_dict: dict, cfg: TrainConfig, holdout: np.ndarray, class_values: list[int],
                     threads: int) -> tuple[np.ndarray, np.ndarray]:
    """_fold_outputs in a worker process, which opens the image set itself."""
    torch.set_num_threads(threads)
    scheme = LabelScheme.from_dict(ann_dict)
    return _fold_outputs(open_image_set(pair, scheme), scheme, cfg, holdout, class_values)


def out_of_fold_probabilities(image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig, folds: int = 5,
                              jobs: int = 1) -> OutOfFold:
    """Every trainable row's outputs from a model trained on the other folds (same config otherwise).

    With `jobs` > 1 the folds train in parallel processes, the CPU threads shared between them.
    """
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ParameterError("folds", f"must be an integer >= 2, got {folds!r}")
    start = time.perf_counter()
    data: TrainingData = prepare_training_data(image_set, scheme, cfg.val_frac, cfg.seed)
    fold = fold_assignment(data.targets, folds, cfg.seed, str(image_set.pair.ann))
    fold_cfg = replace(cfg, resume="", progress=False)
    holdouts = [fold == k for k in range(folds)]
    if jobs > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_fold_in_process, [image_set.pair] * folds, [dict(scheme.ann_dict)] * folds,
                                    [fold_cfg] * folds, holdouts, [data.class_values] * folds, [threads] * folds))
    else:
        results = []
        for k, holdout in enumerate(holdouts):
            if cfg.progress:
                print(f"fold {k + 1}/{folds}: training on {int((fold >= 0).sum() - holdout.sum())} images", flush=True)
            results.append(_fold_outputs(image_set, scheme, fold_cfg, holdout, data.class_values))
    probs = np.full((len(image_set), len(data.class_values)), np.nan, np.float32)
    for k, (fold_probs, _) in enumerate(results):
        probs[fold == k] = fold_probs
    return OutOfFold(probs, fold, [train_rows for _, train_rows in results], time.perf_counter() - start)


# ---------------------------------------------------------------- confident learning

def label_issue_columns(predictions: pd.DataFrame, class_names: list[str], class_values: list[int],
                        wrong_from: str = "out_of_fold") -> pd.DataFrame:
    """`label_quality` (cleanlab's self-confidence, 0 = surely mislabelled) and `is_label_issue`
    (confident learning) for every row labelled with a trained class; NaN / False elsewhere."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    rounded = round_annotations(predictions["annotation"])
    probs = predictions[[score_column(n, wrong_from) for n in class_names]].to_numpy(dtype=float)
    rows = np.flatnonzero(np.isin(rounded, class_values) & np.isfinite(probs).all(axis=1))
    labels = np.searchsorted(np.asarray(class_values), rounded[rows])
    p = np.clip(probs[rows], 1e-6, 1)
    p = p / p.sum(axis=1, keepdims=True)
    quality = np.full(len(predictions), np.nan)
    issue = np.zeros(len(predictions), bool)
    if len(np.unique(labels)) == len(class_values):  # cleanlab needs every class present
        quality[rows] = get_label_quality_scores(labels, p)
        issue[rows] = find_label_issues(labels, p)
    return pd.DataFrame({"label_quality": quality, "is_label_issue": issue}, index=predictions.index)


# ---------------------------------------------------------------- measured against hidden truth

def flip_finding(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> pd.DataFrame:
    """How well each way of flagging wrong labels finds the truly flipped ones (truth.label_flipped).

    Scored on the certain, non-test rows (the ones a model trains on): precision and recall of the
    flagged set, ROC AUC and average precision of the ranking (flips being a few percent of the rows,
    AP shows what ROC AUC hides: how many clean images rank above the flips). Methods: in-sample and
    out-of-fold own-class output < 0.5 (the seed's rule), and cleanlab's issue list / label quality.
    """
    rows, flipped = flip_rows(predictions, truth, scheme)
    methods: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for wrong_from in WRONG_FROM:
        own = own_class_scores(predictions, scheme.certain_names,
                               [scheme.ann_dict[n] for n in scheme.certain_names], wrong_from)
        if np.isfinite(own[rows]).all():
            methods[wrong_from] = (own < 0.5, 1 - own)
    if "label_quality" in predictions.columns:
        quality = pd.to_numeric(predictions["label_quality"], errors="coerce").to_numpy()
        if np.isfinite(quality[rows]).all():
            methods["cleanlab"] = (flag_values(predictions["is_label_issue"]), 1 - quality)
    out = []
    for method, (flagged, suspicion) in methods.items():
        f, y = flagged[rows], flipped[rows]
        out.append({"method": method, "rows": int(rows.sum()), "flipped": int(y.sum()), "flagged": int(f.sum()),
                    "precision": float((f & y).sum() / f.sum()) if f.sum() else float("nan"),
                    "recall": float((f & y).sum() / y.sum()) if y.sum() else float("nan"),
                    **_ranking_scores(y, suspicion[rows])})
    return pd.DataFrame(out).set_index("method") if out else pd.DataFrame(
        columns=["rows", "flipped", "flagged", "precision", "recall", "roc_auc", "average_precision"])


def flip_rows(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    """The rows flip finding is scored on (certain, non-test, known to truth) and truth's flipped flag per row."""
    flipped = truth.set_index("image_id")["label_flipped"].reindex(predictions["image_id"])
    known = flipped.notna().to_numpy()
    rounded = round_annotations(predictions["annotation"])
    split = predictions["split"].astype(str).to_numpy() if "split" in predictions.columns else np.full(len(rounded), "")
    rows = known & np.isin(rounded, [scheme.ann_dict[n] for n in scheme.certain_names]) & (split != "test")
    return rows, flag_values(flipped.fillna(False))


def _ranking_scores(flipped: np.ndarray, suspicion: np.ndarray) -> dict[str, float]:
    if not 0 < flipped.sum() < len(flipped):
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return {"roc_auc": float(roc_auc_score(flipped, suspicion)),
            "average_precision": float(average_precision_score(flipped, suspicion))}
