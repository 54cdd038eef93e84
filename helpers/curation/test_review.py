"""Reviewing the test rows: a queue of them in the order a verified label is worth most to the
verdict, and a simulated reviewer that answers it from the hidden truth (demo and benchmarks only).

Every run's test outputs are out-of-sample (no model ever trains on a test row), so their mean is an
honest second opinion on each test label: cleanlab's label quality of the annotation under it says
how likely the annotation is wrong. A label only moves the verdict where the runs decide differently
(where they all agree it shifts every run's score alike), so those rows come first, most suspect
first, and the rest follow by label quality. A person (07, queue "test") or the simulated reviewer
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


def review_queue(image_ids: np.ndarray, annotated: np.ndarray, outputs: dict[str, tuple[np.ndarray, np.ndarray]],
                 scheme: LabelScheme) -> pd.DataFrame:
    """The test rows, those whose label decides the verdict first: image_id, annotated class, the runs'
    mean positive score, cleanlab's label quality of the annotation under it, how many runs call the
    row positive, the row's priority (verdict_priority) and the queue position.

    `annotated` holds the rows' annotated values (negative or positive), `outputs` each run's positive
    score and predicted-positive flag on the same rows (the clean-label oracle is left out by the
    caller: it learned from the truth)."""
    mean = consensus_score(outputs, len(image_ids))
    labels = (np.asarray(annotated) == POSITIVE_VALUE).astype(int)
    quality = get_label_quality_scores(labels, _two_class_probs(mean))
    calls = np.zeros(len(image_ids), int)
    for _, predicted in outputs.values():
        calls += np.asarray(predicted, bool)
    priority = verdict_priority(quality, calls, len(outputs))
    order = np.lexsort((quality, -priority))  # highest priority first; among equals the most suspect
    queue = pd.DataFrame({"image_id": np.asarray(image_ids)[order],
                          "annotated": np.where(labels[order] == 1, scheme.positive, scheme.negative),
                          "mean positive score": mean[order], "label_quality": quality[order],
                          "runs calling positive": calls[order],
                          "priority": priority[order], "runs": len(outputs)})
    queue.index = pd.RangeIndex(1, len(queue) + 1, name="position")
    return queue


def verdict_priority(quality: np.ndarray, calls: np.ndarray, runs: int) -> np.ndarray:
    """How much verifying each row is expected to move the comparison of runs: the chance its
    annotation is wrong (1 - label quality) times the share of run pairs that decide the row
    differently (`calls` of `runs` runs call it positive); 0 where every run decides alike."""
    pairs = runs * (runs - 1) / 2
    disagreeing = calls * (runs - calls) / pairs if pairs else np.zeros_like(quality)
    return (1 - np.asarray(quality)) * disagreeing


def estimated_label_errors(annotated: np.ndarray, positive_score: np.ndarray) -> int:
    """cleanlab's confident-learning estimate of how many of these labels are wrong (0 with one class)."""
    labels = (np.asarray(annotated) == POSITIVE_VALUE).astype(int)
    if len(np.unique(labels)) < 2:
        return 0
    return int(num_label_issues(labels, _two_class_probs(positive_score)))


def consensus_score(outputs: dict[str, tuple[np.ndarray, np.ndarray]], rows: int) -> np.ndarray:
    """The runs' mean positive score per row (0.5 without any run): the second opinion on a label."""
    return np.mean([score for score, _ in outputs.values()], axis=0) if outputs else np.full(rows, 0.5)


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
