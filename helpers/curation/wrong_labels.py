"""What happens to the certain images flagged as label issues (cleanlab's confident learning on
out-of-fold outputs): `keep` them as given (the origin), `prune` them from training (as cleanlab's
CleanLearning does), or `fix` them to their out-of-fold class where that class's out-of-fold output
is at least `fix_threshold`, pruning the rest. Test rows are never touched: every run is scored on
the same labels.

A pruned row keeps its image but gets annotation -1 (it rounds below 0: predicted, never trained
on); a fixed row gets the out-of-fold class. Both keep their old label in `original_annotation`,
say what happened in `label_action` (how sure its flag was in `action_confidence`) and are
pseudo-labels (`is_gt` False).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.columns import (
    ACTION_CONFIDENCE,
    LABEL_ACTION,
    ORIGINAL_ANNOTATION,
    OUT_OF_FOLD,
    flag_values,
    oof_column,
    test_mask,
)
from ..core.errors import InputError
from ..core.labels import LabelScheme, round_annotations
from ..data.truth import truth_lookup
from .label_issues import ISSUE_COLUMNS

WRONG_LABEL_POLICIES = ("keep", "prune", "fix")
PRUNED_VALUE = -1.0
KEPT, PRUNED, FIXED = "kept", "pruned", "fixed"


NEIGHBOUR_AGREEMENT = ISSUE_COLUMNS["neighbours"][0]


def flagged_rows(predictions: pd.DataFrame, scheme: LabelScheme, source: str = "predictions", *,
                 flag_by: str = "cleanlab", suggest_from: str = OUT_OF_FOLD) -> pd.DataFrame:
    """The label issues of a run, as `flag_by` flags them (cleanlab, or neighbours: see
    label_issues.ISSUE_COLUMNS), for the flagged certain, non-test rows: image_id, the class suggested
    instead (value) and its confidence. `suggest_from` out_of_fold: the out-of-fold class and its
    out-of-fold output; neighbours (two certain classes only): the other class and the share of the
    image's neighbours that carry it."""
    names = scheme.certain_names
    flag = ISSUE_COLUMNS[flag_by][1]
    needed = [flag, *(oof_column(n) for n in names)] if suggest_from == OUT_OF_FOLD else [flag, NEIGHBOUR_AGREEMENT]
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        raise InputError(source, f"no {missing[0]!r} column: pruning or fixing wrong labels needs 03 run with "
                                 "wrong_from='out_of_fold' (cleanlab's label issues)")
    certain = scheme.certain_mask(predictions["annotation"])
    rows = flag_values(predictions[flag]) & certain & ~test_mask(predictions)
    if suggest_from == OUT_OF_FOLD:
        scores = predictions.loc[rows, [oof_column(n) for n in names]].to_numpy(dtype=float)
        best = scores.argmax(axis=1) if len(scores) else np.zeros(0, int)
        suggested = np.asarray(scheme.certain_values, float)[best]
        confidence = scores[np.arange(len(scores)), best] if len(scores) else np.zeros(0)
    else:
        if len(names) != 2:
            raise ValueError(f"suggest_from='neighbours' needs two certain classes, got {names}")
        given = round_annotations(predictions.loc[rows, "annotation"])
        suggested = np.where(given == scheme.certain_values[0], *scheme.certain_values[::-1]).astype(float)
        confidence = 1 - predictions.loc[rows, NEIGHBOUR_AGREEMENT].to_numpy(dtype=float)
    return pd.DataFrame({"image_id": predictions.loc[rows, "image_id"].to_numpy(), "suggested": suggested,
                         "confidence": confidence})


def flagged_actions(confidence: np.ndarray, *, policy: str, fix_threshold: float) -> np.ndarray:
    """What the policy does to each flagged row: fixed where it fixes and the out-of-fold class's
    output (`confidence`) is at least `fix_threshold`, pruned otherwise."""
    fix = (policy == "fix") & (np.asarray(confidence) >= fix_threshold)
    return np.where(fix, FIXED, PRUNED).astype(object)


def apply_policy(ann: pd.DataFrame, flagged: pd.DataFrame, policy: str, fix_threshold: float) -> pd.DataFrame:
    """`ann` (the certain images' annotations) with the policy applied to the `flagged` rows (see
    flagged_rows); rows flagged before keep what was done to them unless flagged again."""
    if policy not in WRONG_LABEL_POLICIES:
        raise ValueError(f"policy must be one of {WRONG_LABEL_POLICIES}, got {policy!r}")
    out = ann.copy()
    if ORIGINAL_ANNOTATION not in out.columns:
        out[ORIGINAL_ANNOTATION] = out["annotation"]
        out[LABEL_ACTION] = KEPT
        out[ACTION_CONFIDENCE] = np.nan
    if policy == "keep" or flagged.empty:
        return out
    by_id = flagged.set_index("image_id")
    rows = np.flatnonzero(out["image_id"].isin(by_id.index).to_numpy() & ~test_mask(out))
    hit = by_id.loc[out["image_id"].to_numpy()[rows]]
    actions = flagged_actions(hit["confidence"].to_numpy(), policy=policy, fix_threshold=fix_threshold)
    annotation = out["annotation"].to_numpy(dtype=float).copy()
    annotation[rows] = np.where(actions == FIXED, hit["suggested"].to_numpy(), PRUNED_VALUE)
    action = out[LABEL_ACTION].to_numpy(dtype=object).copy()
    action[rows] = actions
    confidence = out[ACTION_CONFIDENCE].to_numpy(dtype=float).copy()
    confidence[rows] = hit["confidence"].to_numpy(dtype=float)
    out["annotation"], out[LABEL_ACTION], out[ACTION_CONFIDENCE] = annotation, action, confidence
    is_gt = flag_values(out["is_gt"]).copy() if "is_gt" in out.columns else np.ones(len(out), bool)
    is_gt[rows] = False
    out["is_gt"] = is_gt
    return out


def action_counts(curated: pd.DataFrame) -> dict[str, int]:
    """How many certain images were kept, pruned and fixed."""
    counts = curated[LABEL_ACTION].value_counts() if LABEL_ACTION in curated.columns else pd.Series(dtype=int)
    return {action: int(counts.get(action, 0)) for action in (KEPT, PRUNED, FIXED)}


def action_precision(curated: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> dict[str, float]:
    """Against the hidden truth: the share of pruned images whose given label was wrong, and the
    share of fixed images whose new label is their true class (NaN where none)."""
    true_class = truth_lookup(truth, curated["image_id"])
    given = np.array([scheme.name_of(int(v)) for v in round_annotations(curated[ORIGINAL_ANNOTATION])], dtype=object)
    action = curated[LABEL_ACTION].to_numpy()
    known = pd.notna(true_class)
    pruned, fixed = known & (action == PRUNED), known & (action == FIXED)
    new = np.array([scheme.name_of(int(v)) if v >= 0 else "" for v in round_annotations(curated["annotation"])],
                   dtype=object)
    return {"prune precision": float((given[pruned] != true_class[pruned]).mean()) if pruned.any() else float("nan"),
            "fix precision": float((new[fixed] == true_class[fixed]).mean()) if fixed.any() else float("nan")}
