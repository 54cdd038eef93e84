"""Scoring predictions: scikit-learn metrics, threshold sweeps, and the seed's right/wrong split."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, confusion_matrix, matthews_corrcoef, precision_recall_curve,
                             precision_recall_fscore_support, roc_auc_score)

from .datasets import ImageSet, Pair, write_subsets
from .io import OutputSet
from .labels import LabelScheme, round_annotations


WRONG_FROM = ("in_sample", "out_of_fold")


def output_column(class_name: str) -> str:
    return f"{class_name} output"


def oof_column(class_name: str) -> str:
    """A class's out-of-fold output (deliberately not ending in ' output', which marks the in-sample ones)."""
    return f"{class_name} out-of-fold"


def score_column(class_name: str, wrong_from: str) -> str:
    """Which output decides right/wrong: the final model's (in_sample, seed) or the out-of-fold one."""
    return output_column(class_name) if wrong_from == "in_sample" else oof_column(class_name)


def output_columns(predictions: pd.DataFrame) -> list[str]:
    return [c for c in predictions.columns if c.endswith(" output")]


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
    if positive_value is not None and positive_value in class_values:
        is_pos = true_values == positive_value
        if 0 < is_pos.sum() < len(is_pos):
            metrics["roc_auc"] = float(roc_auc_score(is_pos, probs[:, list(class_values).index(positive_value)]))
    return metrics


def threshold_table(is_positive: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Seed-003 metrics when `score > t` means positive, one row per threshold."""
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
    """Seed 003's two thresholds: the lowest with precision >= target (above it: confident positive)
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


def certain_scores(predictions: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray | None = None,
                   class_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(is the class, its output) for the certain rows (rounded 0 or 1) among `rows` (default: all)."""
    class_name = class_name or scheme.positive
    rows = np.arange(len(predictions)) if rows is None else np.asarray(rows)
    rounded = round_annotations(predictions["annotation"])[rows]
    certain = np.isin(rounded, [scheme.ann_dict[n] for n in scheme.certain_names])
    scores = predictions[output_column(class_name)].to_numpy()[rows][certain]
    return rounded[certain] == scheme.ann_dict[class_name], scores


def own_class_scores(predictions: pd.DataFrame, class_names: Sequence[str], class_values: Sequence[int],
                     wrong_from: str = "in_sample") -> np.ndarray:
    """Each row's output for its annotated class (rounded), among the given classes; NaN for other rows."""
    rounded = round_annotations(predictions["annotation"])
    own = np.full(len(predictions), np.nan)
    for name, value in zip(class_names, class_values):
        column = score_column(name, wrong_from)
        if column in predictions.columns:
            hit = rounded == value
            own[hit] = predictions[column].to_numpy(dtype=float)[hit]
    return own


def wrong_mask(predictions: pd.DataFrame, class_name: str, class_value: int,
               wrong_from: str = "in_sample") -> tuple[np.ndarray, np.ndarray]:
    """Rows of class `class_name` (rounded annotation) and, among them, which the model got wrong:
    the seed's rule is own-class output < 0.5 (in-sample, or out-of-fold with `wrong_from`)."""
    rows = np.flatnonzero(round_annotations(predictions["annotation"]) == class_value)
    own = predictions[score_column(class_name, wrong_from)].to_numpy()[rows]
    return rows, own < 0.5


def split_right_wrong(source: ImageSet, predictions: pd.DataFrame, scheme: LabelScheme,
                      out_pair: "callable", wrong_from: str = "in_sample") -> dict[str, Pair]:
    """Seed step: per certain class, `<class>_wrong` and `<class>_right` image sets (one pass).

    `out_pair(class_name, which)` gives the output pair; rows keep every column of the
    predictions (image_id, split, outputs), so each image stays traceable.
    """
    if len(predictions) != len(source):
        raise ValueError(f"{source.pair.images}: {len(source)} images but {len(predictions)} predictions")
    subsets: dict[Pair, np.ndarray] = {}
    annotations: dict[Pair, pd.DataFrame] = {}
    written: dict[str, Pair] = {}
    for name in scheme.certain_names:
        rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], wrong_from)
        for which, mask in (("wrong", wrong), ("right", ~wrong)):
            pair = out_pair(name, which)
            subsets[pair] = rows[mask]
            annotations[pair] = predictions.iloc[rows[mask]]
            written[f"{name}_{which}"] = pair
    with OutputSet(inputs=list(source.pair)) as outputs:
        write_subsets(source, subsets, outputs, annotations)
    return written


def right_wrong_counts(predictions: pd.DataFrame, scheme: LabelScheme, wrong_from: str = "in_sample") -> pd.DataFrame:
    rows = []
    for name in scheme.certain_names:
        class_rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], wrong_from)
        split = predictions["split"].to_numpy()[class_rows] if "split" in predictions.columns else None
        rows.append({"class": name, "images": len(class_rows), "wrong": int(wrong.sum()), "right": int((~wrong).sum()),
                     "wrong (not test)": int((wrong & (split != "test")).sum()) if split is not None else int(wrong.sum())})
    return pd.DataFrame(rows).set_index("class")
