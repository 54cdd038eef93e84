"""Label issues: cleanlab's confident learning on out-of-fold outputs, the labels of an image's
nearest neighbours in a network's feature space, and (with the demo's hidden truth) how well each
way of flagging wrong labels finds the truly flipped ones."""
from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.neighbors import NearestNeighbors

from ..core.columns import OUT_OF_FOLD, WRONG_FROM, flag_values, output_probabilities, score_column, test_mask
from ..core.labels import LabelScheme, round_annotations
from ..data.truth import truth_lookup
from ..metrics import entropy, own_class_scores, ranking_scores


def cleanlab_probs(probs: np.ndarray) -> np.ndarray:
    """Class probabilities as cleanlab needs them: no exact zeros, each row summing to 1."""
    p = np.clip(probs, 1e-6, 1)
    return p / p.sum(axis=1, keepdims=True)


def label_issue_scores(annotations: np.ndarray, pred_probs: np.ndarray,
                       class_values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's self-confidence (`label_quality`, 0 = surely mislabelled) and confident-learning flag
    of every row annotated with one of `class_values` (rounded) whose `pred_probs` (out-of-sample, one
    column per class value) are known; NaN / False elsewhere, and everywhere when a class is absent."""
    rounded = round_annotations(annotations)
    rows = np.flatnonzero(np.isin(rounded, class_values) & np.isfinite(pred_probs).all(axis=1))
    labels = np.searchsorted(np.asarray(class_values), rounded[rows])
    p = cleanlab_probs(pred_probs[rows])
    quality = np.full(len(rounded), np.nan)
    issue = np.zeros(len(rounded), bool)
    if len(np.unique(labels)) == len(class_values):  # cleanlab needs every class present
        quality[rows] = get_label_quality_scores(labels, p)
        issue[rows] = find_label_issues(labels, p)
    return quality, issue


def label_issue_columns(predictions: pd.DataFrame, class_names: list[str], class_values: list[int],
                        source: str = OUT_OF_FOLD) -> pd.DataFrame:
    """label_issue_scores of a predictions file's `source` outputs, as columns `label_quality` and `is_label_issue`."""
    probs = predictions[[score_column(n, source) for n in class_names]].to_numpy(dtype=float)
    quality, issue = label_issue_scores(predictions["annotation"].to_numpy(), probs, class_values)
    return pd.DataFrame({"label_quality": quality, "is_label_issue": issue}, index=predictions.index)


FLAG_BY = ("cleanlab", "neighbours")  # which label-issue flags a strategy prunes or fixes
# the final model's features neighbour flags compare: of the image as it is, or averaged over its
# test-time views (benchmarks/results/neighbour_flags.jsonl: higher average precision; through the pipeline not
# better at systematic 20%, benchmarks/results/neighbours_tta.jsonl)
NEIGHBOUR_FEATURES = ("image", "view_mean")
ISSUE_COLUMNS = {"cleanlab": ("label_quality", "is_label_issue"),
                 "neighbours": ("neighbour_agreement", "is_neighbour_issue")}  # -> (quality 0-1, flag)


def neighbour_agreement(features: np.ndarray, labels: np.ndarray, *, reference: np.ndarray,
                        n_neighbors: int) -> np.ndarray:
    """Per row with a label (>= 0): the share of its `n_neighbors` nearest `reference` rows (a mask;
    cosine distance between `features`, the row itself left out) that carry its label; NaN for rows
    without one. A model that memorised a wrong label still places the image among images of its
    true class, whose labels disagree with it (the deep k-NN filter of Bahri et al. 2020)."""
    refs = np.flatnonzero(reference)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    k = min(n_neighbors, len(refs) - 1)
    agreement = np.full(len(labels), np.nan)
    rows = np.flatnonzero(labels >= 0)
    if k < 1 or not len(rows):
        return agreement
    _, found = NearestNeighbors(n_neighbors=k + 1).fit(unit[refs]).kneighbors(unit[rows])
    neighbours = refs[found]
    is_self = neighbours == rows[:, None]
    drop_last = ~is_self.any(axis=1)  # a row that is not a reference keeps its k nearest
    keep = ~is_self
    keep[drop_last, -1] = False
    same = labels[neighbours] == labels[rows][:, None]
    agreement[rows] = (same & keep).sum(axis=1) / k
    return agreement


def neighbour_issue_columns(predictions: pd.DataFrame, features: np.ndarray, class_values: list[int], *,
                            n_neighbors: int) -> pd.DataFrame:
    """`neighbour_agreement` of every row annotated with one of `class_values` (rounded), among the
    non-test ones, and `is_neighbour_issue`: most of its neighbours carry another label."""
    rounded = round_annotations(predictions["annotation"])
    labelled = np.isin(rounded, class_values)
    labels = np.where(labelled, rounded, -1)
    agreement = neighbour_agreement(features, labels, reference=labelled & ~test_mask(predictions),
                                    n_neighbors=n_neighbors)
    return pd.DataFrame({"neighbour_agreement": agreement, "is_neighbour_issue": np.nan_to_num(agreement, nan=1) < 0.5},
                        index=predictions.index)


def flip_finding(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> pd.DataFrame:
    """How well each way of flagging wrong labels finds the truly flipped ones (truth.label_flipped).

    Scored on the certain, non-test rows (the ones a model trains on): precision and recall of the
    flagged set, ROC AUC and average precision of the ranking (flips being a few percent of the rows,
    AP shows what ROC AUC hides: how many clean images rank above the flips). Methods: in-sample and
    out-of-fold own-class output < 0.5 (the origin's rule), cleanlab's issue list / label quality, and
    the neighbours' majority vote / agreement.
    """
    rows, flipped = flip_rows(predictions, truth, scheme)
    out = []
    for method, (flagged, suspicion) in suspicion_rankings(predictions, scheme, rows).items():
        if flagged is None:  # a ranking with no flagged set of its own (entropy)
            continue
        f, y = flagged[rows], flipped[rows]
        out.append({"method": method, "rows": int(rows.sum()), "flipped": int(y.sum()), "flagged": int(f.sum()),
                    "precision": float((f & y).sum() / f.sum()) if f.sum() else float("nan"),
                    "recall": float((f & y).sum() / y.sum()) if y.sum() else float("nan"),
                    **ranking_scores(y, suspicion[rows])})
    return pd.DataFrame(out).set_index("method") if out else pd.DataFrame(
        columns=["rows", "flipped", "flagged", "precision", "recall", "roc_auc", "average_precision"])


def suspicion_rankings(predictions: pd.DataFrame, scheme: LabelScheme,
                       rows: np.ndarray) -> dict[str, tuple[np.ndarray | None, np.ndarray]]:
    """Ways to rank rows by how likely their label is wrong (higher = more suspect), each with the
    set it flags (None: a ranking only): in-sample and out-of-fold own-class output (flagged below
    0.5, the origin's rule), cleanlab's label quality (its issue list), neighbour agreement (its
    majority vote), and the entropy of the
    outputs (uncertainty, not disagreement). Only rankings defined on every row of `rows`."""
    methods: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}
    for source in WRONG_FROM:
        own = own_class_scores(predictions, scheme.certain_names, scheme.certain_values, source)
        if np.isfinite(own[rows]).all():
            methods[source] = (own < 0.5, 1 - own)
    for method, (quality_column, flag_column) in ISSUE_COLUMNS.items():
        if quality_column in predictions.columns:
            quality = pd.to_numeric(predictions[quality_column], errors="coerce").to_numpy()
            if np.isfinite(quality[rows]).all():
                methods[method] = (flag_values(predictions[flag_column]), 1 - quality)
    methods["entropy"] = (None, entropy(output_probabilities(predictions)[0]))
    return methods


REVIEW_RANKINGS = {"in_sample": "likely wrong (in-sample)", "out_of_fold": "likely wrong (out-of-fold)",
                   "cleanlab": "label quality (cleanlab)", "neighbours": "neighbour agreement", "entropy": "entropy"}


def review_efficiency(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme,
                      points: int = 100) -> pd.DataFrame:
    """Share of the flipped labels found (rows) when a person reviews the top share of the
    certain, non-test images (index, 0-1) in each ranking's order; with the perfect order and the
    expected random one as bounds. Empty when nothing was flipped."""
    rows, flipped = flip_rows(predictions, truth, scheme)
    y = flipped[rows]
    n, total = int(rows.sum()), int(y.sum())
    if not total:
        return pd.DataFrame()
    reviewed = np.unique(np.ceil(np.round(np.linspace(0, 1, points + 1) * n, 9)).astype(int))
    curves = {"perfect": np.minimum(reviewed / total, 1.0), "random": reviewed / n}
    for method, (_, suspicion) in suspicion_rankings(predictions, scheme, rows).items():
        order = np.argsort(-suspicion[rows], kind="stable")
        found = np.concatenate([[0], np.cumsum(y[order])])
        curves[REVIEW_RANKINGS[method]] = found[reviewed] / total
    return pd.DataFrame(curves, index=pd.Index(reviewed / n, name="share reviewed"))


def review_gain(curve: pd.DataFrame, at: tuple[float, ...] = (0.05, 0.10)) -> pd.DataFrame:
    """Per ranking: the share of flips found after reviewing each share in `at`, as a multiple of
    what a random order finds there (the ratio a reviewer's time is worth)."""
    out = {}
    for share in at:
        row = curve.iloc[int(np.searchsorted(curve.index.to_numpy(), share - 1e-12))]
        out[f"found at {share:.0%}"] = row.drop("random")
        out[f"x random at {share:.0%}"] = row.drop("random") / row["random"]
    return pd.DataFrame(out)


def flip_rows(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    """The rows flip finding is scored on (certain, non-test, known to truth) and truth's flipped flag per row."""
    flipped = pd.Series(truth_lookup(truth, predictions["image_id"], "label_flipped"))
    known = flipped.notna().to_numpy()
    rows = known & scheme.certain_mask(predictions["annotation"]) & ~test_mask(predictions)
    return rows, flag_values(flipped.fillna(False))
