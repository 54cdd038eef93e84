"""Issue 7: out-of-fold predictions, confident learning, proposal strategies, sample weights, and
flip finding measured against truth."""
import numpy as np
import pandas as pd
import pytest
from conftest import write_set

from helpers.core.atomic import OutputSet
from helpers.core.columns import PROPOSED, oof_column, output_column
from helpers.core.errors import InputError, NotTrainable
from helpers.core.labels import EXCLUDED_UNSURE_VALUE, round_annotations
from helpers.curation.compare import flip_finding_table
from helpers.curation.label_issues import (
    flip_finding,
    label_issue_columns,
    neighbour_agreement,
    neighbour_issue_columns,
    review_efficiency,
    review_gain,
)
from helpers.curation.out_of_fold import FoldSettings, fold_assignment, out_of_fold_probabilities
from helpers.curation.proposals import (
    binary_entropy_bits,
    ceal,
    propagate,
    propose,
    two_thresholds,
)
from helpers.curation.relabel import relabel_accuracy, relabel_coverage, relabel_unsure
from helpers.curation.right_wrong import wrong_mask
from helpers.curation.strategies import (
    SEED_STRATEGIES,
    STRATEGIES,
    classifier_inputs,
    differentiator_inputs,
)
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.combine_split import combine, split_by_class
from helpers.data.layout import Layout
from helpers.data.sets import open_image_set
from helpers.model.training import fit, prepare_training_data
from helpers.run.parameters import train_config

FAST = dict(arch="resnet10", width=8, batch_size=32, progress=False)


def _pattern_set(tmp_path, n=240, seed=0, flip=0):
    """Class 1 carries a bright spot; the first `flip` rows of the train split get the wrong label."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n).astype(float)
    images = rng.integers(0, 120, (n, 2, 9, 9)).astype(np.uint8)
    images[truth == 1, 0, 3:6, 3:6] = 250
    split = np.where(rng.random(n) < 0.2, "test", "train")
    labels = truth.copy()
    flipped = np.zeros(n, bool)
    flipped[np.flatnonzero(split == "train")[:flip]] = True
    labels[flipped] = 1 - labels[flipped]
    ids = [f"p:{i}" for i in range(n)]
    pair = write_set(tmp_path / "pattern", "pattern", images, labels, split=split, image_id=ids)
    truth_frame = pd.DataFrame({"image_id": ids, "truth": np.where(truth == 1, "parasite", "non-parasite"),
                                "label_flipped": flipped})
    return pair, truth_frame


# ---------------------------------------------------------------- out-of-fold

def test_fold_assignment_is_stratified_and_covers_only_trainable_rows():
    targets = np.array([0] * 30 + [1] * 15 + [-1] * 5)
    fold = fold_assignment(targets, 5, seed=0)
    assert (fold[targets < 0] == -1).all() and set(fold[targets >= 0]) == set(range(5))
    for k in range(5):
        assert ((fold == k) & (targets == 0)).sum() == 6 and ((fold == k) & (targets == 1)).sum() == 3
    with pytest.raises(NotTrainable, match="at least 5 training images of every class"):
        fold_assignment(np.array([0] * 20 + [1] * 3), 5, seed=0)


def test_out_of_fold_models_never_train_on_their_own_rows(tmp_path, scheme):
    pair, _ = _pattern_set(tmp_path)
    image_set = open_image_set(pair, scheme)
    oof = out_of_fold_probabilities(image_set, scheme, train_config(epochs=1, **FAST), FoldSettings(3))
    test = (image_set.ann["split"] == "test").to_numpy()
    assert (oof.fold[test] == -1).all() and (oof.fold[~test] >= 0).all()
    for k, train_rows in enumerate(oof.train_rows):
        assert not np.isin(train_rows, np.flatnonzero(oof.fold == k)).any()
        assert np.isin(train_rows, np.flatnonzero((oof.fold >= 0) & (oof.fold != k))).all()
    assert np.isfinite(oof.probs[~test]).all() and np.isnan(oof.probs[test]).all()
    np.testing.assert_allclose(oof.probs[~test].sum(axis=1), 1, atol=1e-5)


def test_folds_in_parallel_processes_give_the_same_outputs(tmp_path, scheme):
    pair, _ = _pattern_set(tmp_path, n=120)
    image_set = open_image_set(pair, scheme)
    serial, parallel = (out_of_fold_probabilities(image_set, scheme, train_config(epochs=1, **FAST), FoldSettings(2, jobs))
                        for jobs in (1, 2))
    np.testing.assert_array_equal(serial.fold, parallel.fold)
    held = serial.fold >= 0
    np.testing.assert_allclose(serial.probs[held], parallel.probs[held], atol=1e-4)


def test_holdout_rows_neither_train_nor_validate(tmp_path, scheme):
    pair, _ = _pattern_set(tmp_path)
    image_set = open_image_set(pair, scheme)
    holdout = np.zeros(len(image_set), bool)
    holdout[::3] = True
    data = prepare_training_data(image_set, scheme, 0.3, 0, holdout)
    assert not np.isin(np.concatenate([data.train_rows, data.val_rows]), np.flatnonzero(holdout)).any()


def test_out_of_fold_run_writes_oof_and_cleanlab_columns_that_find_a_planted_flip(tmp_path, scheme):
    pair, truth = _pattern_set(tmp_path, n=300, flip=8)
    cfg = train_config(epochs=8, lr=3e-3, keep_weights="last", **FAST)
    request = TrainRequest(cfg, tmp_path / "p.csv", tmp_path / "m.zip", out_of_fold=FoldSettings(3))
    run = train_and_save(pair, scheme, request)
    preds = pd.read_csv(tmp_path / "p.csv")
    for column in (oof_column("parasite"), oof_column("non-parasite"), "fold", "label_quality", "is_label_issue"):
        assert column in preds.columns
    test = (preds["split"] == "test").to_numpy()
    # test rows take the final model's outputs (it never saw them); other rows their fold model's
    np.testing.assert_allclose(preds.loc[test, oof_column("parasite")], preds.loc[test, output_column("parasite")])
    quality = preds["label_quality"].to_numpy()
    assert ((quality >= 0) & (quality <= 1)).all()
    flipped = truth["label_flipped"].to_numpy()
    assert np.median(quality[flipped]) < np.median(quality[~flipped])
    assert preds["is_label_issue"][flipped].mean() > preds["is_label_issue"][~flipped].mean()
    assert run.metrics["out_of_fold"]["folds"] == 3 and run.metrics["out_of_fold"]["seconds"] > 0
    # the right/wrong rule can use either outputs
    rows, wrong_oof = wrong_mask(preds, "parasite", 1, "out_of_fold")
    assert len(rows) == (round_annotations(preds["annotation"]) == 1).sum() and wrong_oof.dtype == bool
    agreement = preds["neighbour_agreement"].to_numpy()
    assert ((agreement >= 0) & (agreement <= 1)).all() and np.median(agreement[flipped]) < np.median(agreement[~flipped])
    table = flip_finding(preds, truth, scheme)
    assert list(table.index) == ["in_sample", "out_of_fold", "cleanlab", "neighbours"]
    assert table.loc["out_of_fold", "roc_auc"] > 0.8 and table.loc["cleanlab", "recall"] > 0.5
    # a ranking better than chance has average precision above the share of flips
    flip_rate = table.loc["out_of_fold", "flipped"] / table.loc["out_of_fold", "rows"]
    assert table.loc["out_of_fold", "average_precision"] > 2 * flip_rate


def test_neighbour_agreement_flags_a_planted_flip_its_model_memorised():
    """Two clusters in a toy feature space; a few images of each carry the other cluster's label. A
    model that memorised them says nothing, but their neighbours' labels do."""
    rng = np.random.default_rng(0)
    features = np.r_[rng.normal([5, 0], 1, (100, 2)), rng.normal([0, 5], 1, (100, 2))]
    labels = np.r_[np.zeros(100), np.ones(100)].astype(int)
    flipped = np.zeros(200, bool)
    flipped[[3, 50, 120, 170]] = True
    labels[flipped] = 1 - labels[flipped]
    agreement = neighbour_agreement(features, labels, reference=np.ones(200, bool), n_neighbors=10)
    assert (agreement[flipped] < 0.3).all() and (agreement[~flipped] > 0.7).all()
    # a row outside the reference (a test row) is scored against the reference rows only, all k of them
    reference = np.ones(200, bool)
    reference[:20] = False
    outside = neighbour_agreement(features, labels, reference=reference, n_neighbors=10)
    assert outside[3] < 0.3 and np.isclose(outside[5] * 10, round(outside[5] * 10))
    labels_missing = labels.copy()
    labels_missing[7] = -1
    assert np.isnan(neighbour_agreement(features, labels_missing, reference=np.ones(200, bool), n_neighbors=10)[7])


def test_neighbour_issue_columns_never_take_test_rows_as_neighbours():
    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0], [0.1, 0.99], [0.2, 0.98]])
    preds = pd.DataFrame({"annotation": [0.0, 0.0, 1.0, 1.0, 1.0, 0.0],
                          "split": ["train", "train", "test", "train", "train", "test"]})
    out = neighbour_issue_columns(preds, features, [0, 1], n_neighbors=1)
    assert out["neighbour_agreement"].tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert out["is_neighbour_issue"].tolist() == [False, False, True, False, False, True]


def test_label_issue_columns_on_a_planted_flip(scheme):
    n = 200
    labels = np.array([0.0, 1.0] * (n // 2))
    p1 = np.where(labels == 1, 0.9, 0.1)
    p1[:4] = 1 - p1[:4]  # the model confidently disagrees with four labels
    preds = pd.DataFrame({"annotation": np.r_[labels[:-1], -1.0], oof_column("non-parasite"): 1 - p1,
                          oof_column("parasite"): p1})
    out = label_issue_columns(preds, ["non-parasite", "parasite"], [0, 1])
    assert out["is_label_issue"][:4].all() and not out["is_label_issue"][4:].any()
    assert out["label_quality"][:4].max() < out["label_quality"][4:-1].min()
    assert np.isnan(out["label_quality"].iloc[-1])  # unlabeled rows get no score


def test_keep_weights_last_keeps_the_final_epoch(tmp_path, scheme):
    pair, _ = _pattern_set(tmp_path)
    result = fit(open_image_set(pair, scheme), scheme, train_config(epochs=3, keep_weights="last", **FAST))
    assert result.best_epoch == 3
    with pytest.raises(ValueError, match="keep_weights"):
        train_config(keep_weights="middle")


# ---------------------------------------------------------------- sample weights

def test_sample_weights_steer_the_loss(tmp_path, scheme):
    """Half the parasites are labelled non-parasite; weighting those rows 0 recovers the truth on them."""
    from helpers.model.inference import predict_probabilities

    pair, _ = _pattern_set(tmp_path)
    ann = pd.read_csv(pair.ann)
    cfg = train_config(epochs=6, lr=3e-3, sample_weights="label_quality", **FAST)
    with pytest.raises(InputError, match="label_quality column"):
        fit(open_image_set(pair, scheme), scheme, cfg)
    parasites = np.flatnonzero((ann["annotation"] == 1).to_numpy() & (ann["split"] != "test").to_numpy())
    mislabelled = parasites[::2]
    ann.loc[mislabelled, "annotation"] = 0.0
    outputs = {}
    for name, weight in (("equal", 1.0), ("down-weighted", 0.0)):
        ann["label_quality"] = 1.0
        ann.loc[mislabelled, "label_quality"] = weight
        ann.to_csv(pair.ann, index=False)
        image_set = open_image_set(pair, scheme)
        probs = predict_probabilities(fit(image_set, scheme, cfg).model, image_set.images)
        outputs[name] = probs[mislabelled, 1].mean()
    assert outputs["down-weighted"] > 0.8 and outputs["down-weighted"] > outputs["equal"] + 0.2


# ---------------------------------------------------------------- proposal strategies

def test_ceal_labels_only_confident_unsures():
    scores = np.array([0.99, 0.01, 0.6, 0.45, 0.93])
    proposal = ceal(scores, delta=0.5)
    assert binary_entropy_bits(np.array([0.5]))[0] == pytest.approx(1.0)
    assert proposal.proposed.tolist() == [1.0, 0.0, EXCLUDED_UNSURE_VALUE, EXCLUDED_UNSURE_VALUE, 1.0]  # H(0.93) = 0.37 bits


def test_two_thresholds_exclude_the_middle():
    scores = np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    assert two_thresholds(scores, 0.2, 0.8).proposed.tolist() == [0.0, EXCLUDED_UNSURE_VALUE, EXCLUDED_UNSURE_VALUE, 1.0, 1.0]
    assert two_thresholds(scores, None, None).proposed.tolist() == [EXCLUDED_UNSURE_VALUE] * 5  # unreachable: nobody moves


def test_propagation_follows_the_feature_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    labels = np.repeat([0, 1], 40)
    labelled = centres[labels] + rng.normal(0, 0.1, (80, 4))
    unsure = np.r_[centres[[0] * 5], centres[[1] * 5]] + rng.normal(0, 0.1, (10, 4))
    proposal = propagate(labelled, labels, unsure, n_neighbors=5)
    assert proposal.proposed.tolist() == [0.0] * 5 + [1.0] * 5
    assert (proposal.scores[5:] > 0.5).all() and (proposal.scores[:5] < 0.5).all()


def test_the_table_has_the_seed_strategies_and_three_proposal_strategies():
    assert list(SEED_STRATEGIES) == ["s_1a", "s_1b", "s_2a", "s_2b", "s_3a", "s_3b"]
    assert {n: STRATEGIES[n].method for n in ("s_ceal", "s_prop", "s_2thr")} == {
        "s_ceal": "ceal", "s_prop": "propagation", "s_2thr": "two_thresholds"}
    assert all(STRATEGIES[n].baseline == "s_b" for n in ("s_ceal", "s_prop", "s_2thr"))


@pytest.fixture
def trained_layout(tiny_demo, scheme, tmp_path):
    """Combined, split, and a real (tiny) SB baseline with out-of-fold outputs."""
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    split_by_class(layout.combined, scheme)
    train_and_save(layout.certain, scheme, TrainRequest(train_config(epochs=2, **FAST), layout.predictions("s_b"),
                                                        layout.model_perf("s_b"), out_of_fold=FoldSettings(2)))
    return layout


@pytest.mark.parametrize("name", ["s_ceal", "s_prop", "s_2thr"])
def test_proposal_strategy_inputs_and_relabeled_set(trained_layout, scheme, name):
    strategy = STRATEGIES[name]
    assert list(differentiator_inputs(strategy, trained_layout)) == ["unsure"]
    unsure = open_image_set(trained_layout.class_set("unsure"), scheme)
    predictions, proposal = propose(strategy.method, trained_layout, delta=0.5, n_neighbors=5)
    assert predictions["image_id"].tolist() == unsure.ann["image_id"].tolist()
    assert set(predictions[PROPOSED]) <= {0.0, 1.0, EXCLUDED_UNSURE_VALUE}
    assert ((predictions["parasite output"] >= 0) & (predictions["parasite output"] <= 1)).all()
    relabeled = relabel_unsure(unsure.ann, predictions, scheme, 0.9)
    np.testing.assert_array_equal(relabeled["annotation"], predictions[PROPOSED])
    assert 0 <= relabel_coverage(relabeled) <= 1
    if name == "s_2thr":
        assert "out_of_fold" in proposal.details["calibrated_on"]
    # excluded unsures round below 0: in the classifier's set, predicted but never trained on
    with OutputSet() as out:
        out.csv(relabeled, trained_layout.relabeled(name, 0.9))
    ann = combine(list(classifier_inputs(strategy, trained_layout, 0.9).values()), trained_layout.run_set(name, "cl"),
                  scheme, inputs=["certain", "relabeled unsure"])
    data = prepare_training_data(open_image_set(trained_layout.run_set(name, "cl"), scheme), scheme, 0.3, 0)
    excluded = np.flatnonzero(ann["annotation"].to_numpy() == EXCLUDED_UNSURE_VALUE)
    assert not np.isin(excluded, np.concatenate([data.train_rows, data.val_rows])).any()


def test_relabel_accuracy_counts_only_labelled_unsures(scheme):
    relabeled = pd.DataFrame({"image_id": list("abcd"), "annotation": [1.0, 0.0, EXCLUDED_UNSURE_VALUE, EXCLUDED_UNSURE_VALUE]})
    truth = pd.DataFrame({"image_id": list("abcd"), "truth": ["parasite", "parasite", "parasite", "non-parasite"]})
    assert relabel_accuracy(relabeled, truth, scheme) == 0.5 and relabel_coverage(relabeled) == 0.5


# ---------------------------------------------------------------- comparison with truth

def test_flip_finding_columns_appear_only_with_truth(trained_layout, tiny_demo, scheme):
    truth = pd.read_csv(tiny_demo["truth"])
    assert flip_finding_table(trained_layout, None).empty
    assert flip_finding_table(trained_layout, truth.drop(columns="label_flipped")).empty
    table = flip_finding_table(trained_layout, truth)
    assert list(table.index) == [("s_b", "in_sample"), ("s_b", "out_of_fold"), ("s_b", "cleanlab"),
                                  ("s_b", "neighbours")]
    assert {"precision", "recall", "roc_auc", "average_precision", "flipped", "flagged"} <= set(table.columns)


def test_review_efficiency_counts_flips_found_per_share_reviewed_by_hand(scheme):
    # 10 certain training rows, 2 of them flipped (rows 3 and 7); 2 test rows never counted
    n = 12
    parasite = np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.95, 0.85, 0.2, 0.9, 0.75, 0.1, 0.9])
    preds = pd.DataFrame({"image_id": [f"s:{i}" for i in range(n)], "annotation": 1.0,
                          "split": ["train"] * 10 + ["test"] * 2,
                          "parasite output": parasite, "non-parasite output": 1 - parasite})
    truth = pd.DataFrame({"image_id": preds["image_id"], "truth": "parasite",
                          "label_flipped": np.isin(np.arange(n), [3, 7, 10])})
    curve = review_efficiency(preds, truth, scheme, points=10)
    assert curve.index.tolist() == pytest.approx([i / 10 for i in range(11)])
    # most suspect first (lowest parasite output for a parasite label): rows 3 (0.1) and 7 (0.2)
    assert curve["likely wrong (in-sample)"].tolist()[:3] == [0.0, 0.5, 1.0]
    assert curve["perfect"].tolist()[:3] == [0.0, 0.5, 1.0] and curve["random"].iloc[2] == pytest.approx(0.2)
    gain = review_gain(curve, at=(0.1, 0.2))
    assert gain.loc["likely wrong (in-sample)", "x random at 20%"] == pytest.approx(5.0)
    assert "random" not in gain.index and "entropy" in gain.index
    assert review_efficiency(preds, truth.assign(label_flipped=False), scheme).empty
