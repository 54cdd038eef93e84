"""What a strategy's curation changed, image by image: the certain images it pruned or fixed and the
unsures it relabeled, each with its given label and the new one, the surest change first; with the
hidden truth (demo data), also the true class and whether the change was right.

A pruned image's change is right when its given label was wrong; a fixed or relabeled one's when its
new label is the true class.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.columns import ACTION_CONFIDENCE, LABEL_ACTION, ORIGINAL_ANNOTATION
from ..core.labels import POSITIVE_VALUE, LabelScheme, round_annotations
from ..data.truth import truth_lookup
from .wrong_labels import FIXED, PRUNED


def curation_changes(curated: pd.DataFrame | None, relabeled: pd.DataFrame | None, scheme: LabelScheme,
                     truth: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Per kind of change (pruned, fixed, relabeled): one row per changed image (image_id, given, new,
    confidence, truth, right; its position in `curated` or `relabeled` as the index), the surest first.
    A kind the strategy does not make is absent; `truth` and `right` are empty without the truth."""
    changes = {}
    if curated is not None and LABEL_ACTION in curated.columns:
        for kind in (PRUNED, FIXED):
            rows = curated[curated[LABEL_ACTION] == kind]
            if len(rows):
                changes[kind] = _changes(rows, scheme, rows[ORIGINAL_ANNOTATION],
                                         _confidence(rows), truth, pruned=kind == PRUNED)
    if relabeled is not None and len(relabeled):
        rows = relabeled[round_annotations(relabeled["annotation"]) >= 0]
        if len(rows):
            score = rows["relabel_score"].to_numpy(dtype=float)
            positive = round_annotations(rows["annotation"]) == POSITIVE_VALUE
            given = pd.Series(scheme.ann_dict[scheme.unsure], index=rows.index)
            changes["relabeled"] = _changes(rows, scheme, given, np.where(positive, score, 1 - score), truth)
    return changes


def _confidence(rows: pd.DataFrame) -> np.ndarray:
    if ACTION_CONFIDENCE in rows.columns:
        return rows[ACTION_CONFIDENCE].to_numpy(dtype=float)
    return np.full(len(rows), np.nan)  # curated by an earlier version: no confidence recorded


def _changes(rows: pd.DataFrame, scheme: LabelScheme, given: pd.Series, confidence: np.ndarray,
             truth: pd.DataFrame | None, pruned: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "given": scheme.class_names(given),
                          "new": "pruned" if pruned else scheme.class_names(rows["annotation"]),
                          "confidence": confidence}, index=rows.index)
    if truth is not None:
        true_class = truth_lookup(truth, frame["image_id"])
        frame["truth"] = true_class
        right = (frame["given"] != true_class) if pruned else (frame["new"] == true_class)
        frame["right"] = np.where(pd.isna(true_class), None, right)
    else:
        frame["truth"], frame["right"] = None, None
    order = np.argsort(-np.nan_to_num(frame["confidence"].to_numpy(dtype=float), nan=-1.0), kind="stable")
    return frame.iloc[order]


def change_caption(row: pd.Series) -> str:
    """`given -> new`, the confidence, and with the truth whether the change was right."""
    text = f"{row['given']} -> {row['new']}"
    if np.isfinite(row["confidence"]):
        text += f" {row['confidence']:.2f}"
    if row["right"] is not None:
        text += f"\ntruth {row['truth']} {'right' if row['right'] else 'WRONG'}"
    return text


def change_summary(changes: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per kind: how many images changed and, with the truth, the share of changes that were right."""
    rows = {}
    for kind, frame in changes.items():
        known = frame["right"].dropna()
        rows[kind] = {"images": len(frame), "right (truth)": float(known.astype(bool).mean()) if len(known) else None}
    return pd.DataFrame.from_dict(rows, orient="index")
