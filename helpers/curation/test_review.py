"""Reviewing the test rows: a queue of them ordered by how likely their annotation is wrong, and a
simulated reviewer that answers it from the hidden truth (demo and benchmarks only).

Every run's test outputs are out-of-sample (no model ever trains on a test row), so their mean is an
honest second opinion on each test label; cleanlab's label quality of the annotation under that mean
orders the queue, most suspect first. A person (07, queue "test") or the simulated reviewer
(`review_budget`) confirms labels from its head: the verified labels 06 scores on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.count import num_label_issues
from cleanlab.rank import get_label_quality_scores

from ..core.labels import POSITIVE_VALUE, LabelScheme
from ..data.truth import truth_lookup
from ..data.verified import VerifiedStore
from .label_issues import cleanlab_probs

SIMULATED_REVIEWER = "simulated reviewer (truth.csv)"


def review_queue(image_ids: np.ndarray, annotated: np.ndarray, positive_scores: dict[str, np.ndarray],
                 scheme: LabelScheme) -> pd.DataFrame:
    """The test rows, most likely mislabelled first: image_id, annotated class, the runs' mean
    positive score, cleanlab's label quality of the annotation under it, and the queue position.

    `annotated` holds the rows' annotated values (negative or positive), `positive_scores` each
    run's positive output on the same rows (the clean-label oracle is left out by the caller: it
    learned from the truth)."""
    mean = consensus_score(positive_scores, len(image_ids))
    labels = (np.asarray(annotated) == POSITIVE_VALUE).astype(int)
    quality = get_label_quality_scores(labels, _two_class_probs(mean))
    order = np.argsort(quality, kind="stable")
    queue = pd.DataFrame({"image_id": np.asarray(image_ids)[order],
                          "annotated": np.where(labels[order] == 1, scheme.positive, scheme.negative),
                          "mean positive score": mean[order], "label_quality": quality[order],
                          "runs": len(positive_scores)})
    queue.index = pd.RangeIndex(1, len(queue) + 1, name="position")
    return queue


def estimated_label_errors(annotated: np.ndarray, positive_score: np.ndarray) -> int:
    """cleanlab's confident-learning estimate of how many of these labels are wrong (0 with one class)."""
    labels = (np.asarray(annotated) == POSITIVE_VALUE).astype(int)
    if len(np.unique(labels)) < 2:
        return 0
    return int(num_label_issues(labels, _two_class_probs(positive_score)))


def consensus_score(positive_scores: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """The runs' mean positive output per row (0.5 without any run): the second opinion on a label."""
    return np.mean(list(positive_scores.values()), axis=0) if positive_scores else np.full(rows, 0.5)


def _two_class_probs(positive_score: np.ndarray) -> np.ndarray:
    return cleanlab_probs(np.stack([1 - positive_score, positive_score], axis=1))


def simulate_review(queue: pd.DataFrame, truth: pd.DataFrame, budget: int, store: VerifiedStore) -> int:
    """Answer the first `budget` rows of the queue from the truth, as a careful person would, and
    write them to `store` (replacing what an earlier simulation wrote) marked simulated; returns
    how many labels the annotations had wrong among them."""
    head = queue.head(budget)
    true_class = truth_lookup(truth, head["image_id"])
    store.path.unlink(missing_ok=True)
    if budget:
        store.add(head["image_id"].tolist(), list(true_class), annotated=head["annotated"].tolist(), simulated=True)
    return int((true_class != head["annotated"].to_numpy()).sum())


def scoring_labels(test: pd.DataFrame, verified: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each test row's label to score on (its verified value where one exists, else its annotated
    one) and whether it was verified."""
    by_id = verified.set_index("image_id")["value"] if len(verified) else pd.Series(dtype=int)
    value = by_id.reindex(test["image_id"]).to_numpy(dtype=float)
    is_verified = np.isfinite(value)
    labels = np.where(is_verified, value, test["value"].to_numpy()).astype(int)
    return labels, is_verified
