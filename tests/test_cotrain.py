"""Co-training (helpers.model.cotrain): the loss mixture, co-guessing, label refinement, and a fit on
tiny data that learns through wrong labels and predicts with the pair's mean."""
import numpy as np
import pandas as pd
import pytest
from conftest import noisy_spots

from helpers import plots
from helpers.core.errors import ParameterError
from helpers.core.paths import PROJECT_ROOT
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.sets import open_image_set
from helpers.model.bundle import load_bundle, predict_with_bundle
from helpers.model.cotrain import (
    clean_probability,
    co_guess,
    divide,
    fit_cotrain,
    refine_labels,
    sharpen,
    unlabeled_ramp,
)
from helpers.model.inference import ensemble_probabilities
from helpers.run.parameter_files import load_parameters
from helpers.run.parameters import train_config
from helpers.run.runner import plan

FAST = dict(arch="resnet10", width=8, batch_size=32, progress=False, augment="flips_rot90")


def test_the_loss_mixture_gives_planted_high_loss_rows_a_low_clean_probability():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.gamma(2.0, 0.05, 180), rng.normal(2.5, 0.3, 20)])  # 20 planted wrong labels
    clean = clean_probability(losses, seed=0)
    assert clean[:180].mean() > 0.95 and clean[180:].max() < 0.05
    assert ((clean >= 0.5) == (np.arange(200) < 180)).mean() > 0.99


def test_the_mixture_divides_each_class_by_itself():
    """A rare class whose clean rows all lose more than the common class's must not be called wrong wholesale."""
    rng = np.random.default_rng(1)
    common, rare = rng.gamma(2.0, 0.02, 300), rng.normal(1.6, 0.1, 30)
    losses = np.concatenate([common, rare, [3.0, 3.2, 3.1]])  # three wrong labels in the rare class
    groups = np.array([0] * 300 + [1] * 33)
    by_class = clean_probability(losses, groups, seed=0)
    pooled = clean_probability(losses, seed=0)
    assert by_class[300:330].min() > 0.5 and by_class[330:].max() < 0.5
    assert pooled[300:330].mean() < by_class[300:330].mean()


def test_a_class_too_small_or_too_uniform_to_split_keeps_its_labels():
    assert clean_probability(np.array([0.1, 5.0, 0.2])).tolist() == [1.0, 1.0, 1.0]
    assert clean_probability(np.full(50, 0.3)).tolist() == [1.0] * 50


def test_sharpening_raises_the_largest_share_and_keeps_distributions():
    p = np.array([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1]])
    q = sharpen(p, 0.5)
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[0], [0.36 / 0.52, 0.16 / 0.52])
    np.testing.assert_allclose(q[1], [0.5, 0.5])
    np.testing.assert_allclose(sharpen(p, 1.0), p)


def test_co_guessing_averages_the_two_networks_then_sharpens():
    own, other = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.5, 0.5], [0.4, 0.6]])
    guess = co_guess(own, other, 0.5)
    mean = (own + other) / 2
    np.testing.assert_allclose(guess, mean**2 / (mean**2).sum(1, keepdims=True))
    assert guess[0, 0] > mean[0, 0] and guess[1, 1] > mean[1, 1]


def test_refined_labels_follow_the_label_when_clean_and_the_prediction_when_not():
    given, own = np.array([[1.0, 0.0]] * 3), np.array([[0.1, 0.9]] * 3)
    refined = refine_labels(given, own, np.array([1.0, 0.0, 0.5]), 1.0)
    np.testing.assert_allclose(refined, [[1.0, 0.0], [0.1, 0.9], [0.55, 0.45]], atol=1e-9)


def test_the_unlabeled_loss_ramps_up_linearly_over_the_cotraining_epochs():
    weights = [unlabeled_ramp(epoch, warmup=2, epochs=6) for epoch in range(2, 6)]
    assert weights == [0.25, 0.5, 0.75, 1.0]  # the first epoch after the warm-up a quarter, the last in full
    assert unlabeled_ramp(7, warmup=2, epochs=6) == 1.0


def test_divide_keeps_the_rows_the_network_fits_and_moves_the_rest_to_the_unlabeled_rows():
    rng = np.random.default_rng(2)
    n = 120
    targets = rng.integers(0, 2, n)
    probs = np.where(np.eye(2)[targets] == 1, 0.97, 0.03)
    wrong = np.arange(0, n, 10)  # the network confidently predicts the other class on these rows
    probs[wrong] = probs[wrong][:, ::-1]
    train_rows, pool = np.arange(100), np.arange(100, 120)
    division = divide(probs + rng.uniform(0, 0.01, probs.shape), targets, train_rows, pool, threshold=0.5, seed=0)
    planted = set(wrong[wrong < 100].tolist())
    assert set(division.labelled.tolist()) == set(train_rows.tolist()) - planted
    assert set(division.unlabeled.tolist()) == planted | set(pool.tolist())


def test_cotraining_divides_after_the_warm_up_learns_through_wrong_labels_and_predicts_with_both(tmp_path, scheme):
    pair, truth = noisy_spots(tmp_path / "spots")
    cfg = train_config(**FAST, epochs=8, lr=0.01, unlabeled="cotrain", cotrain_warmup=3)
    result = fit_cotrain(open_image_set(pair, scheme), scheme, cfg)
    history = result.history
    assert len(history) == 8 and result.best_epoch == 8 and history["labelled_share"].isna().sum() == 3  # the warm-up trains on every label
    assert (history["labelled_share"].dropna() < 1).all()  # then the pair moves doubted labels to the unlabeled rows
    assert len(result.ensemble) == 2 and result.predictors == result.ensemble
    first, second = (p.state_dict()["fc.weight"] for p in result.ensemble)
    assert not first.equal(second)  # two networks, not one twice
    images = np.load(pair.images)
    probs = ensemble_probabilities(result.predictors, images)
    mean = np.mean([ensemble_probabilities([m], images) for m in result.ensemble], axis=0)
    np.testing.assert_allclose(probs, mean, atol=1e-6)
    assert (probs.argmax(1) == truth).mean() > 0.9  # against the truth, through 20% wrong labels


def test_an_observer_sees_every_cotraining_epochs_division_and_the_wrong_labels_go_first(tmp_path, scheme):
    pair, truth = noisy_spots(tmp_path / "spots")
    labels = pd.read_csv(pair.ann)["annotation"].to_numpy()
    seen = []
    cfg = train_config(**FAST, epochs=6, lr=0.01, unlabeled="cotrain", cotrain_warmup=2)
    fit_cotrain(open_image_set(pair, scheme), scheme, cfg,
                observe=lambda epoch, divisions, targets: seen.append((epoch, divisions, targets)))
    assert [epoch for epoch, _, _ in seen] == [2, 3, 4, 5]  # every epoch after the warm-up, before it trains
    pool = np.flatnonzero(labels < 0)
    wrong = labels != truth
    for _, divisions, targets in seen:
        assert len(divisions) == len(targets) == 2
        for division, target in zip(divisions, targets):
            assert set(pool) <= set(division.unlabeled)  # the rows without a label are always unlabeled
            trained = np.concatenate([division.labelled, division.unlabeled])
            np.testing.assert_allclose(target[trained].sum(1), 1.0, atol=1e-6)  # a distribution for every row
    lost = np.setdiff1d(seen[-1][1][0].unlabeled, pool)
    assert wrong[lost].mean() > 3 * wrong[labels >= 0].mean()  # the doubted labels are mostly the wrong ones


def test_cotraining_can_keep_the_pair_of_the_best_validation_epoch(tmp_path, scheme):
    pair, _ = noisy_spots(tmp_path / "spots", n=160, unlabeled=20)
    cfg = train_config(**FAST, epochs=4, unlabeled="cotrain", cotrain_warmup=1, cotrain_keep="best")
    result = fit_cotrain(open_image_set(pair, scheme), scheme, cfg)
    assert result.best_epoch == int(result.history["val_loss"].idxmin()) + 1


def test_a_cotraining_run_saves_a_bundle_that_predicts_with_the_pair(tmp_path, scheme):
    pair, _ = noisy_spots(tmp_path / "spots", n=160, unlabeled=20)
    cfg = train_config(**FAST, epochs=3, unlabeled="cotrain", cotrain_warmup=1)
    request = TrainRequest(cfg, tmp_path / "preds.csv", tmp_path / "model_perf.zip")
    run = train_and_save(pair, scheme, request)
    bundle = load_bundle(request.bundle_path)
    assert len(bundle.predictors) == 2
    images = np.load(pair.images)
    saved = run.predictions[[c for c in run.predictions.columns if c.endswith(" output")]].to_numpy()
    np.testing.assert_allclose(predict_with_bundle(bundle, images), saved, atol=1e-5)


def test_a_warm_up_as_long_as_the_fit_is_refused_naming_it():
    with pytest.raises(ParameterError, match="cotrain_warmup.*3 epochs"):
        train_config(**FAST, epochs=3, unlabeled="cotrain", cotrain_warmup=3)
    train_config(**FAST, epochs=3, cotrain_warmup=3)  # no co-training: the setting does not act


def test_a_run_whose_warm_up_outlasts_the_fit_is_refused_before_it_starts(tmp_path):
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), "data_dir_base": str(tmp_path / "runs"),
              "wrong_from": "out_of_fold"}  # smoke.yaml trains 2 epochs; the warm-up defaults to 2
    with pytest.raises(ParameterError, match="05_relabel_and_classify.*cotrain_warmup|cotrain_warmup.*2 epochs"):
        plan(params, strategies=["s_prune", "s_cotrain"])
    plan({**params, "cotrain_warmup": 1}, strategies=["s_prune", "s_cotrain"])
    plan(params, strategies=["s_prune"])  # the warm-up only binds a co-training strategy


def test_the_benchmark_plot_shows_each_strategys_gap_with_its_interval():
    frame = pd.DataFrame({"setting": ["uniform 20%", "uniform 20%", "systematic 20%", "systematic 20%"],
                          "strategy": ["s_prune", "s_cotrain", "s_prune", "s_cotrain"],
                          "gap": [0.63, 0.61, 0.10, 0.57], "low": [0.35, 0.31, -0.45, 0.43],
                          "high": [0.90, 0.91, 0.65, 0.72]})
    ax = plots.gap_closed_with_intervals(frame).axes[0]
    bars = {c.get_label(): [round(b.get_height(), 6) for b in c.patches] for c in ax.containers
            if hasattr(c, "patches")}
    assert bars == {"s_prune": [63.0, 10.0], "s_cotrain": [61.0, 57.0]}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["uniform 20%", "systematic 20%"]
