"""Scoring predictions: scikit-learn metrics, threshold sweeps and operating points.

The two operating thresholds are those of the obstacle classifier credited in the README: the
lowest score with precision at or above a target, and the highest with recall at or above one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from .core.columns import IN_SAMPLE, output_column, score_column
from .core.labels import POSITIVE_VALUE, LabelScheme, round_annotations


def classification_metrics(true_values: np.ndarray, probs: np.ndarray, class_values: Sequence[int],
                           class_names: Sequence[str], positive_value: int | None = 1) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix and (positive vs rest) ROC AUC.

    `true_values` are rounded annotations, `probs` one column per trained class. Rows whose true
    value is not a trained class count as errors for accuracy and appear in the confusion matrix.
    """
    true_values = np.asarray(true_values)
    if len(true_values) == 0:
        return {"rows": 0}
    labels = sorted(set(class_values) | set(true_values.tolist()))
    pred_values = np.asarray(class_values)[np.argmax(probs, axis=1)]
    names = [class_names[list(class_values).index(v)] if v in class_values else str(v) for v in labels]
    precision, recall, f1, support = precision_recall_fscore_support(
        true_values, pred_values, labels=labels, zero_division=0)
    metrics = {
        "rows": int(len(true_values)),
        "accuracy": float(accuracy_score(true_values, pred_values)),
        "per_class": {n: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for n, p, r, f, s in zip(names, precision, recall, f1, support)},
        "confusion_matrix": {"labels": names,
                             "counts": confusion_matrix(true_values, pred_values, labels=labels).tolist()},
    }
    trained = np.isin(true_values, class_values)
    if trained.any():
        index = np.searchsorted(np.asarray(class_values), true_values[trained])
        metrics["ece"] = expected_calibration_error(index, probs[trained])
    if positive_value is not None and positive_value in class_values:
        is_pos = true_values == positive_value
        if 0 < is_pos.sum() < len(is_pos):
            metrics["roc_auc"] = float(roc_auc_score(is_pos, probs[:, list(class_values).index(positive_value)]))
    return metrics


def entropy(probs: np.ndarray, *, bits: bool = False) -> np.ndarray:
    """Entropy of each row of class probabilities (nats; bits with `bits`): how unsure an output is."""
    p = np.clip(np.asarray(probs, float), 1e-12, 1)
    return -(p * (np.log2(p) if bits else np.log(p))).sum(axis=1)


def expected_calibration_error(true_index: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: over equal-width bins of the highest output, the row-weighted gap between that
    output's mean and the share of rows where it names the true class."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == np.asarray(true_index)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]
    return float(sum(gaps))


def binary_calibration_error(is_positive: np.ndarray, positive_score: np.ndarray) -> float:
    """expected_calibration_error of a two-class output given as the positive class's score."""
    return expected_calibration_error(np.asarray(is_positive).astype(int),
                                      np.stack([1 - positive_score, positive_score], axis=1))


def threshold_table(is_positive: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Confusion counts and rates when `score > t` means positive, one row per threshold."""
    is_positive = np.asarray(is_positive, bool)
    scores = np.asarray(scores, float)
    thresholds = np.round(np.arange(0.05, 1.0, 0.05), 2) if thresholds is None else thresholds
    rows = []
    for t in thresholds:
        pred = scores > t
        tp, fp = int((pred & is_positive).sum()), int((pred & ~is_positive).sum())
        fn, tn = int((~pred & is_positive).sum()), int((~pred & ~is_positive).sum())
        rows.append({
            "threshold": float(t), "TP": tp, "TN": tn, "FP": fp, "FN": fn,
            "recall": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "precision": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "mcc": float(matthews_corrcoef(is_positive, pred)) if len(set(is_positive)) > 1 else float("nan"),
            "accuracy": _ratio(tp + tn, len(pred)),
        })
    return pd.DataFrame(rows).set_index("threshold")


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def operating_thresholds(is_positive: np.ndarray, scores: np.ndarray, precision_target: float = 0.95,
                         recall_target: float = 0.95) -> dict:
    """The two operating thresholds: the lowest with precision >= target (above it: confident positive)
    and the highest with recall >= target (below it: confident negative). None where unreachable."""
    is_positive = np.asarray(is_positive, bool)
    if is_positive.all() or not is_positive.any():
        return {"precision_threshold": None, "recall_threshold": None}
    precision, recall, thresholds = precision_recall_curve(is_positive, scores)
    precision, recall = precision[:-1], recall[:-1]  # align with thresholds (score >= t)
    ok_p = np.flatnonzero(precision >= precision_target)
    ok_r = np.flatnonzero(recall >= recall_target)
    return {
        "precision_target": precision_target, "recall_target": recall_target,
        "precision_threshold": float(thresholds[ok_p[0]]) if len(ok_p) else None,
        "recall_threshold": float(thresholds[ok_r[-1]]) if len(ok_r) else None,
    }


def split_rows(predictions: pd.DataFrame, split: str = "test") -> np.ndarray:
    """Rows of one split (every row when there is no `split` column)."""
    if "split" not in predictions.columns:
        return np.arange(len(predictions))
    return np.flatnonzero((predictions["split"] == split).to_numpy())


def test_threshold_table(predictions: pd.DataFrame, scheme: LabelScheme,
                         thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """The threshold sweep of the positive output on the certain test rows."""
    return threshold_table(*certain_scores(predictions, scheme, split_rows(predictions, "test")), thresholds)


def certain_scores(predictions: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray | None = None,
                   class_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(is the class, its output) for the certain rows (rounded 0 or 1) among `rows` (default: all)."""
    class_name = class_name or scheme.positive
    rows = np.arange(len(predictions)) if rows is None else np.asarray(rows)
    rounded = round_annotations(predictions["annotation"])[rows]
    certain = scheme.certain_mask(rounded)
    scores = predictions[output_column(class_name)].to_numpy()[rows][certain]
    return rounded[certain] == scheme.ann_dict[class_name], scores


def own_class_scores(predictions: pd.DataFrame, class_names: Sequence[str], class_values: Sequence[int],
                     source: str = IN_SAMPLE) -> np.ndarray:
    """Each row's output for its annotated class (rounded), among the given classes; NaN for other rows."""
    rounded = round_annotations(predictions["annotation"])
    own = np.full(len(predictions), np.nan)
    for name, value in zip(class_names, class_values):
        column = score_column(name, source)
        if column in predictions.columns:
            hit = rounded == value
            own[hit] = predictions[column].to_numpy(dtype=float)[hit]
    return own


def score_predictions(predictions: pd.DataFrame, class_names: list[str], class_values: list[int],
                      scheme: LabelScheme, precision_target: float = 0.95, recall_target: float = 0.95) -> dict:
    """Metrics on the validation rows and on the shared test rows, plus the positive class's thresholds."""
    probs = predictions[[output_column(n) for n in class_names]].to_numpy()
    rounded = round_annotations(predictions["annotation"])
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        rows = split_rows(predictions, split)
        rows = rows[rounded[rows] >= 0]
        out[split] = classification_metrics(rounded[rows], probs[rows], class_values, class_names, POSITIVE_VALUE)
        if POSITIVE_VALUE in class_values and len(rows):
            certain = rows[scheme.certain_mask(rounded[rows])]
            out[split]["thresholds"] = operating_thresholds(
                rounded[certain] == POSITIVE_VALUE, predictions[output_column(scheme.positive)].to_numpy()[certain],
                precision_target, recall_target)
    return out


def threshold_summary(is_positive: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """The threshold table's numbers at one threshold."""
    return {"threshold": float(threshold), **threshold_table(is_positive, scores, [threshold]).iloc[0].to_dict()}


FP_PER_UL = "false positives per µl"


def false_positives_per_ul(slides: np.ndarray, is_positive: np.ndarray, predicted_positive: np.ndarray,
                           red_cells: pd.Series, rbc_per_ul: float) -> pd.DataFrame:
    """The origin's false positives per µl, per negative slide (none of its rows positive): the slide's
    false positives against the red cells imaged on it (`red_cells`, per slide), scaled to the
    `rbc_per_ul` red cells of a microlitre of blood."""
    rows = pd.DataFrame({"slide": np.asarray(slides, dtype=str), "positive": np.asarray(is_positive, bool),
                         "FP": np.asarray(predicted_positive, bool) & ~np.asarray(is_positive, bool)})
    per_slide = rows.groupby("slide").agg(crops=("positive", "size"), positives=("positive", "sum"), FP=("FP", "sum"))
    negative = per_slide[per_slide["positives"] == 0].drop(columns="positives")
    negative["red cells"] = red_cells.reindex(negative.index).to_numpy()
    negative[FP_PER_UL] = negative["FP"] / negative["red cells"] * rbc_per_ul
    return negative


def false_positives_summary(per_slide: pd.DataFrame) -> dict[str, float]:
    """Of a false_positives_per_ul table: how many negative slides, and their mean and largest false
    positives per µl."""
    values = per_slide[FP_PER_UL]
    return {"negative slides": len(values), f"{FP_PER_UL} (slide mean)": values.mean(),
            f"{FP_PER_UL} (slide max)": values.max()}


def recall_at_fpr(is_positive: np.ndarray, scores: np.ndarray, max_fpr: float) -> dict[str, float]:
    """The highest recall whose false-positive rate is at most `max_fpr` (a screening operating point),
    with its threshold and actual rate; NaN without both classes."""
    if not 0 < is_positive.sum() < len(is_positive):
        return {"recall": float("nan"), "fpr": float("nan"), "threshold": float("nan")}
    fpr, tpr, thresholds = roc_curve(is_positive, scores)
    allowed = np.flatnonzero(fpr <= max_fpr)  # fpr[0] == 0: never empty
    best = allowed[np.argmax(tpr[allowed])]
    threshold = float(thresholds[best]) if np.isfinite(thresholds[best]) else float("nan")  # nan: nothing positive
    return {"recall": float(tpr[best]), "fpr": float(fpr[best]), "threshold": threshold}


def ranking_scores(is_target: np.ndarray, scores: np.ndarray, at_recall: float = 0.9) -> dict[str, float]:
    """ROC AUC and average precision of a ranking (high score = likely target), and the highest
    precision of a cut that finds at least `at_recall` of the targets; NaN with one class only."""
    key = f"precision at {at_recall:.0%} recall"
    if not 0 < is_target.sum() < len(is_target):
        return {"roc_auc": float("nan"), "average_precision": float("nan"), key: float("nan")}
    precision, recall, _ = precision_recall_curve(is_target, scores)
    return {"roc_auc": float(roc_auc_score(is_target, scores)),
            "average_precision": float(average_precision_score(is_target, scores)),
            key: float(precision[recall >= at_recall].max())}


def bootstrap_p_above(differences: np.ndarray) -> float:
    """One-sided p-value that a paired difference is above zero, from its bootstrap resamples: the
    share of resamples at or below zero (with the +1 that keeps it from being 0)."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    return float((1 + (d <= 0).sum()) / (1 + len(d)))


def stepdown_adjusted(observed: np.ndarray, resampled: np.ndarray) -> np.ndarray:
    """Romano and Wolf's step-down adjusted p-values that each of m differences is above zero, from
    their paired bootstrap resamples (m, B): like Holm's correction it keeps the chance of any false
    claim at alpha, but it uses how the differences move together (runs trained on the same data err alike),
    so it loses less power with many correlated runs. Studentised by each difference's bootstrap SE."""
    d = np.asarray(observed, float)
    r = np.asarray(resampled, float)
    defined = np.isfinite(d) & np.isfinite(r).any(axis=1)  # an undefined difference is never a claim
    adjusted = np.ones(len(d))
    if not defined.any():
        return adjusted
    d, r = d[defined], r[defined]
    se = np.maximum(np.nanstd(r, axis=1), 1e-12)
    t = d / se
    null = np.nan_to_num((r - d[:, None]) / se[:, None], nan=-np.inf)  # the spread around each difference
    order = np.argsort(-t, kind="stable")
    kept = np.empty(len(d))
    running = 0.0
    for k, i in enumerate(order):
        max_null = null[order[k:]].max(axis=0)
        running = max(running, (1 + np.sum(max_null >= t[i])) / (1 + null.shape[1]))
        kept[i] = running
    adjusted[defined] = kept
    return adjusted
