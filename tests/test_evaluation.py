import numpy as np
import pytest

from helpers.metrics import (
    classification_metrics,
    operating_thresholds,
    ranking_scores,
    threshold_table,
)


def test_metrics_on_a_hand_checked_case():
    true = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    m = classification_metrics(true, probs, [0, 1], ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"]["counts"] == [[2, 1], [1, 1]]
    assert m["per_class"]["pos"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # positive scores 0.8, 0.3 against negatives 0.1, 0.4, 0.7: 4 of 6 pairs ordered right
    assert m["roc_auc"] == pytest.approx(4 / 6)


def test_three_class_model_scored_on_two_class_truth():
    true = np.array([0, 1, 1])
    probs = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3]])
    m = classification_metrics(true, probs, [0, 1, 2], ["neg", "pos", "unsure"])
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"]["counts"] == [[0, 0, 1], [1, 1, 0], [0, 0, 0]]


def test_threshold_table_counts():
    is_pos = np.array([1, 1, 0, 0, 1], bool)
    scores = np.array([0.9, 0.4, 0.6, 0.1, 0.7])
    row = threshold_table(is_pos, scores, [0.5]).loc[0.5]
    assert (row.TP, row.FP, row.FN, row.TN) == (2, 1, 1, 1)
    assert row.recall == pytest.approx(2 / 3) and row.specificity == pytest.approx(0.5)
    assert row.precision == pytest.approx(2 / 3) and row.npv == pytest.approx(0.5)
    assert row.accuracy == pytest.approx(3 / 5)


def test_operating_thresholds():
    is_pos = np.array([0, 0, 0, 1, 0, 1, 1, 1], bool)
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.7, 0.9])
    t = operating_thresholds(is_pos, scores, precision_target=1.0, recall_target=1.0)
    assert t["precision_threshold"] == pytest.approx(0.6)  # score >= 0.6: only positives
    assert t["recall_threshold"] == pytest.approx(0.35)  # score >= 0.35 keeps every positive


def test_ranking_precision_at_a_recall_by_hand():
    # ranked: T T F T F F T F (scores 8..1): finding 3 of 4 targets takes the top 4 (precision 3/4);
    # all 4 take all 7 from the top (4/7)
    is_target = np.array([1, 1, 0, 1, 0, 0, 1, 0], bool)
    scores = np.arange(8, 0, -1, dtype=float)
    assert ranking_scores(is_target, scores, at_recall=0.75)["precision at 75% recall"] == pytest.approx(3 / 4)
    assert ranking_scores(is_target, scores, at_recall=1.0)["precision at 100% recall"] == pytest.approx(4 / 7)
    assert np.isnan(ranking_scores(np.ones(3, bool), np.arange(3.0))["precision at 90% recall"])
