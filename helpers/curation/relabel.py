"""Relabeling the unsure images from a differentiator's predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.columns import PROPOSED, SOFT_TARGET, output_column
from ..core.errors import InputError
from ..core.labels import NEGATIVE_VALUE, POSITIVE_VALUE, LabelScheme
from ..data.truth import truth_lookup


def relabel_unsure(unsure_ann: pd.DataFrame, diff_predictions: pd.DataFrame, scheme: LabelScheme,
                   thresh: float, predictions_path: str = "predictions") -> pd.DataFrame:
    """Unsure rows whose positive output is > thresh become positive (1), the rest negative (0);
    with a `proposed_annotation` column (proposal strategies) that annotation is taken instead
    (1, 0, or -0.8: kept out of training), and a `soft_target` column (soft targets) is carried over.

    Rows are matched on `image_id`; the result has the unsure file's rows and columns, the new
    `annotation`, `relabel_score` (the differentiator's positive output) and `is_gt` = False
    (a pseudo-label).
    """
    score_col = output_column(scheme.positive)
    if score_col not in diff_predictions.columns:
        raise InputError(predictions_path, f"no {score_col!r} column: the differentiator did not learn the positive class")
    scores = diff_predictions.set_index("image_id")[score_col]
    missing = ~unsure_ann["image_id"].isin(scores.index)
    if missing.any():
        raise InputError(predictions_path, f"{int(missing.sum())} unsure image(s) have no prediction "
                                           f"(first: {unsure_ann['image_id'][missing].iloc[0]})")
    out = unsure_ann.copy()
    out["relabel_score"] = scores.loc[out["image_id"]].to_numpy()
    if PROPOSED in diff_predictions.columns:  # a proposal strategy decided each label already
        proposed = diff_predictions.set_index("image_id")[PROPOSED].loc[out["image_id"]].to_numpy(dtype=float)
        out["annotation"] = proposed
        if SOFT_TARGET in diff_predictions.columns:
            out[SOFT_TARGET] = diff_predictions.set_index("image_id")[SOFT_TARGET].loc[out["image_id"]].to_numpy(dtype=float)
    else:
        out["annotation"] = threshold_labels(out["relabel_score"].to_numpy(), thresh)
    out["is_gt"] = False
    return out


def threshold_labels(scores: np.ndarray, thresh: float) -> np.ndarray:
    """Positive (1.0) where the positive output is above `thresh`, negative (0.0) elsewhere."""
    return np.where(np.asarray(scores) > thresh, float(POSITIVE_VALUE), float(NEGATIVE_VALUE))


def label_names(values: pd.Series, scheme: LabelScheme, excluded: str = "excluded") -> pd.Series:
    """Relabeled/proposed annotations as class names; -0.8 (kept out of training) as `excluded`."""
    return values.astype(float).map({float(POSITIVE_VALUE): scheme.positive,
                                     float(NEGATIVE_VALUE): scheme.negative}).fillna(excluded)


def relabel_sweep(scores: np.ndarray, thresholds=None) -> pd.DataFrame:
    """How many unsures would become positive / negative at each threshold."""
    thresholds = np.round(np.arange(0.05, 1.0, 0.05), 2) if thresholds is None else np.asarray(thresholds)
    positive = np.array([(scores > t).sum() for t in thresholds])
    return pd.DataFrame({"threshold": thresholds, "to positive": positive, "to negative": len(scores) - positive,
                         "share positive": positive / max(len(scores), 1)}).set_index("threshold")


def relabel_accuracy(relabeled: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> float:
    """Share of the unsures given a label whose new label matches the hidden truth (demo data only);
    unsures left out (-0.8) are not counted, see `relabel_coverage`."""
    true_class = truth_lookup(truth, relabeled["image_id"])
    values = relabeled["annotation"].to_numpy(dtype=float)
    new_class = np.where(values == POSITIVE_VALUE, scheme.positive, scheme.negative)
    known = pd.notna(true_class) & np.isin(values, [POSITIVE_VALUE, NEGATIVE_VALUE])
    return float((new_class[known] == true_class[known]).mean()) if known.any() else float("nan")


def relabel_coverage(relabeled: pd.DataFrame) -> float:
    """Share of the unsures that got a label (the rest are kept out of training)."""
    values = relabeled["annotation"].to_numpy(dtype=float)
    return float(np.isin(values, [POSITIVE_VALUE, NEGATIVE_VALUE]).mean()) if len(values) else float("nan")
