import numpy as np
import pandas as pd
import pytest
from conftest import write_set

from helpers.core.errors import InputError
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.combine_split import combine
from helpers.data.layout import Layout
from helpers.data.overrides import OverrideStore
from helpers.data.sets import open_image_set, read_annotations
from helpers.metrics import threshold_summary
from helpers.model.training import prepare_training_data
from helpers.review.features import cached_features, in_polygon, most_similar
from helpers.review.logic import QUEUE_ORDER, badge, filter_rows, order_rows, page, sample_for_review
from helpers.run.parameters import train_config


def _preds():
    return pd.DataFrame({
        "annotation": [0.0, 1.0, 0.0, 1.0, 2.0, 0.0],
        "image_id": [f"src:{i}" for i in range(6)],
        "split": ["train", "train", "val", "test", "train", "test"],
        "non-parasite output": [0.9, 0.05, 0.2, 0.45, 0.5, 0.99],
        "parasite output": [0.1, 0.95, 0.8, 0.55, 0.5, 0.01],
    })


def test_likely_wrong_puts_confident_disagreements_first(scheme):
    order = order_rows(_preds(), scheme, "likely wrong")
    # disagreeing rows: 2 (labelled 0, parasite 0.8), 4 (unsure, predicted 0.5), 3 (labelled 1, 0.55)? no: 3 agrees
    assert order[:2].tolist() == [2, 4]
    assert set(order) == set(range(6))


def test_score_entropy_label_and_random_sorts(scheme):
    preds = _preds()
    assert order_rows(preds, scheme, "score", "parasite").tolist()[:2] == [1, 2]
    assert order_rows(preds, scheme, "score", "parasite", descending=False)[0] == 5
    assert order_rows(preds, scheme, "entropy")[0] == 4  # 0.5/0.5 is the most uncertain
    assert order_rows(preds, scheme, "label", descending=False).tolist()[:3] == [0, 2, 5]
    r1, r2 = (order_rows(preds, scheme, "random", seed=3) for _ in range(2))
    assert r1.tolist() == r2.tolist() and sorted(r1) == list(range(6))
    assert order_rows(preds, scheme, QUEUE_ORDER).tolist() == list(range(6))  # the test-review queue as 06 wrote it
    with pytest.raises(ValueError):
        order_rows(preds, scheme, "colour")


def test_filters_and_paging(scheme):
    preds = _preds()
    rows = np.arange(6)
    assert filter_rows(preds, scheme, rows, label="non-parasite").tolist() == [0, 2, 5]
    assert filter_rows(preds, scheme, rows, split="test").tolist() == [3, 5]
    assert filter_rows(preds, scheme, rows, score_class="parasite", score_range=(0.5, 0.9)).tolist() == [2, 3, 4]
    assert page(rows, 1, 4).tolist() == [4, 5] and page(rows, 9, 4).tolist() == [4, 5] and page(rows, 0, 4).tolist() == [0, 1, 2, 3]


def test_override_store_appends_atomically_and_undoes_one_action(tmp_path):
    store = OverrideStore(tmp_path / "overrides.csv", source_file="preds.csv")
    assert store.undo() == 0
    b1 = store.add(["src:1", "src:2"], ["parasite", "non-parasite"], "unsure")
    b2 = store.add(["src:2"], ["unsure"], "parasite")
    table = pd.read_csv(tmp_path / "overrides.csv")
    assert (b1, b2) == (1, 2) and len(table) == 3
    assert list(table.columns[:6]) == ["batch", "image_id", "field", "old", "new", "time"]
    assert (table["source_file"] == "preds.csv").all()
    assert dict(zip(store.latest()["image_id"], store.latest()["new"])) == {"src:1": "unsure", "src:2": "parasite"}
    assert [p.name for p in tmp_path.iterdir()] == ["overrides.csv"]  # no temp files left
    assert store.undo() == 1
    assert dict(zip(store.latest()["image_id"], store.latest()["new"])) == {"src:1": "unsure", "src:2": "unsure"}


def test_overrides_change_the_combined_annotations_on_rerun(tiny_demo, scheme, tmp_path):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    before = combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    store = OverrideStore(tmp_path / "overrides.csv")
    ids = before["image_id"].iloc[[3, 7, 11, 20, 40]].tolist()
    store.add(ids, ["x"] * 5, "parasite")
    store.add([ids[0]], ["x"], True, "exclude")
    after = combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0, overrides=store.path)
    written = read_annotations(layout.combined.ann)
    assert (written.set_index("image_id").loc[ids, "annotation"] == 1.0).all()
    assert written["split"].tolist() == before["split"].tolist()  # corrections never reshuffle the test rows
    assert written.set_index("image_id").loc[ids[0], "exclude"] and written["exclude"].sum() == 1
    unchanged = ~written["image_id"].isin(ids)
    assert written.loc[unchanged, "annotation"].tolist() == before.loc[unchanged, "annotation"].tolist()
    assert after["annotation"].tolist() == written["annotation"].tolist()


def test_bad_overrides_are_named(tiny_demo, scheme, tmp_path):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    store = OverrideStore(tmp_path / "overrides.csv")
    store.add(["nowhere:1"], ["x"], "parasite")
    with pytest.raises(InputError, match="overrides.csv: line 2: 1 override"):
        combine(layout.default_sources, layout.combined, scheme, overrides=store.path)
    assert not layout.combined.images.exists()
    store.undo()
    store.add(["patient_combined_images:0"], ["x"], "cat")
    with pytest.raises(InputError, match="'cat' is not in the scheme"):
        combine(layout.default_sources, layout.combined, scheme, overrides=store.path)


def test_exclude_and_validation_flags_steer_training(tmp_path, scheme):
    rng = np.random.default_rng(0)
    n = 40
    exclude = np.zeros(n, bool); exclude[:5] = True
    validation = np.zeros(n, bool); validation[5:8] = True
    pair = write_set(tmp_path, "flags", rng.integers(0, 255, (n, 1, 5, 5)).astype(np.uint8), rng.integers(0, 2, n).astype(float),
                     exclude=exclude, validation=validation)
    data = prepare_training_data(open_image_set(pair, scheme), scheme, 0.3, 0)
    used = set(data.train_rows) | set(data.val_rows)
    assert not used & set(range(5)) and {5, 6, 7} <= set(data.val_rows)


def test_similarity_returns_the_query_first():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8))
    features[17] = features[3] * 2.0  # same direction as the query
    rows, scores = most_similar(features, 3, k=5)
    assert rows[0] == 3 and rows[1] == 17 and scores[0] == 1.0 and scores[1] == pytest.approx(1.0)
    assert len(set(rows)) == 5


def test_samplers_pick_what_they_say(scheme):
    preds = _preds()
    assert sample_for_review(preds, "max entropy", 1).tolist() == [4]
    assert sample_for_review(preds, "high score", 2, "parasite").tolist() == [1, 2]
    assert sample_for_review(preds, "class entropy", 1, "parasite").tolist() == [4]
    assert sample_for_review(preds, "max entropy", 1, candidates=np.array([0, 1])).tolist() == [0]
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 4))
    picks = sample_for_review(preds, "badge", 3, features=features)
    assert len(set(picks.tolist())) == 3
    with pytest.raises(ValueError, match="features"):
        sample_for_review(preds, "badge", 3)


def test_badge_starts_from_the_largest_gradient_and_picks_distinct_rows():
    probs = np.array([[0.99, 0.01]] * 10 + [[0.5, 0.5]] * 2)
    features = np.vstack([np.ones((10, 3)), [[5, 0, 0], [0, 5, 0]]])
    picks = badge(probs, features, 4, seed=0)
    assert picks[0] == 10 and len(set(picks.tolist())) == 4
    # an uncertain, far-away point is drawn far more often than a confident one (D^2 seeding)
    second = [badge(probs, features, 2, seed=s)[1] for s in range(200)]
    assert second.count(11) / 200 > 1 / 11 * 1.5


def test_threshold_summary_counts_at_one_threshold():
    is_pos = np.array([1, 1, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.2, 0.7, 0.1, 0.1, 0.1])
    s = threshold_summary(is_pos, scores, 0.5)
    assert (s["threshold"], s["TP"], s["FP"], s["FN"], s["TN"]) == (0.5, 1, 1, 1, 3)


def test_lasso_polygon():
    points = np.array([[0.5, 0.5], [2, 2], [0.1, 0.9]])
    assert in_polygon(points, np.array([[0, 0], [1, 0], [1, 1], [0, 1]])).tolist() == [True, False, True]


def test_a_test_row_relabeled_unsure_leaves_the_test_split(tiny_demo, scheme, tmp_path):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    before = combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    test_id = before.loc[before["split"] == "test", "image_id"].iloc[0]
    store = OverrideStore(tmp_path / "overrides.csv")
    store.add([test_id], ["x"], "unsure")
    after = combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0, overrides=store.path)
    row = after.set_index("image_id").loc[test_id]
    assert row["annotation"] == 2.0 and row["split"] == "train"
    assert (after["split"] == "test").sum() == (before["split"] == "test").sum() - 1


def test_features_are_cached_whole_and_reused(tmp_path, scheme, monkeypatch):
    import helpers.review.features as features_module

    rng = np.random.default_rng(0)
    pair = write_set(tmp_path / "set", "set", rng.integers(0, 255, (40, 2, 9, 9)).astype(np.uint8),
                     rng.integers(0, 2, 40).astype(float))
    run = train_and_save(pair, scheme, TrainRequest(train_config(arch="resnet10", width=8, epochs=1, progress=False),
                                                    tmp_path / "run" / "ann_with_predictions.csv",
                                                    tmp_path / "run" / "model_perf.zip"))
    cache = tmp_path / "run" / "ann_with_predictions_features.npy"
    first = cached_features(run.bundle_path, run.image_set.images, cache)
    assert first.shape == (40, run.fit.model.n_features)
    assert sorted(p.name for p in cache.parent.iterdir() if "features" in p.name) == [
        "ann_with_predictions_features.json", "ann_with_predictions_features.npy"]  # no temp file left beside it
    monkeypatch.setattr(features_module, "load_bundle", lambda path: pytest.fail("the cache was not used"))
    np.testing.assert_array_equal(cached_features(run.bundle_path, run.image_set.images, cache), first)


def test_a_strategy_folder_of_an_earlier_version_is_read_through_its_final_files(tmp_path, scheme):
    """Earlier versions tagged the final classifier's files `final`; the suite writes the origin's `cl`
    and still reads such a folder when only the `final` files are there."""
    from helpers.review.logic import images_for
    layout = Layout(tmp_path / "data", tmp_path / "neg", tmp_path / "runs", scheme)
    assert layout.predictions("s_1a", "cl").name == "ann_with_predictions_cl.csv"
    assert layout.run_set("s_1a", "cl").images.name == "combined_images_cl.npy"
    old = write_set(layout.run_dir("s_1a"), "combined", np.zeros((2, 1, 3, 3), np.uint8), [0.0, 1.0])
    old.images.rename(layout.run_dir("s_1a") / "combined_images_final.npy")
    assert images_for(layout, "s_1a") == layout.run_dir("s_1a") / "combined_images_final.npy"
    np.save(layout.run_set("s_1a", "cl").images, np.zeros((2, 1, 3, 3), np.uint8))
    assert images_for(layout, "s_1a") == layout.run_set("s_1a", "cl").images  # the new name wins where both exist
