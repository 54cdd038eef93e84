import numpy as np
import pandas as pd
import pytest
import torch
from conftest import snapshot, write_set

from helpers.core.columns import output_column
from helpers.core.errors import InputError, ParameterError
from helpers.curation.right_wrong import split_right_wrong, wrong_mask
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.combine_split import combine, split_by_class
from helpers.data.layout import Layout
from helpers.data.sets import open_image_set
from helpers.model.bundle import load_bundle, predict_with_bundle
from helpers.model.inference import inference_copy
from helpers.model.networks import ModelSpec, build_model
from helpers.model.training import batch_bounds, fit, prepare_training_data
from helpers.run.parameters import train_config

FAST = dict(arch="resnet10", width=8, batch_size=32, progress=False)


@pytest.fixture
def demo_layout(tiny_demo, scheme, tmp_path):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    split_by_class(layout.combined, scheme)
    return layout



def _train(pair, scheme, cfg, predictions, bundle):
    """One training run that writes `predictions` and `bundle`."""
    return train_and_save(pair, scheme, TrainRequest(cfg, predictions, bundle))

def _pattern_set(tmp_path, n=240, seed=0):
    """Class 1 images carry a bright centre spot: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(float)
    images = rng.integers(0, 120, (n, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, 3:6, 3:6] = 250
    split = np.where(rng.random(n) < 0.2, "test", "train")
    return write_set(tmp_path / "pattern", "pattern", images, labels, split=split)


def test_training_reduces_loss_and_beats_chance(tmp_path, scheme):
    pair = _pattern_set(tmp_path)
    run = _train(pair, scheme, train_config(epochs=6, lr=3e-3, **FAST), tmp_path / "preds.csv", tmp_path / "model_perf.zip")
    history = run.fit.history
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert run.metrics["test"]["accuracy"] > 0.9 and run.metrics["test"]["roc_auc"] > 0.95
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == ["index", "annotation", "split", "non-parasite output", "parasite output"]
    assert set(preds["split"]) == {"train", "val", "test"}
    # test rows were never trained on: their split survives unchanged
    source = pd.read_csv(pair.ann)
    assert (preds["split"] == "test").sum() == (source["split"] == "test").sum()
    np.testing.assert_allclose(preds[["non-parasite output", "parasite output"]].sum(axis=1), 1.0, atol=1e-5)


def test_a_last_batch_of_one_row_joins_the_one_before(tmp_path, scheme):
    """BatchNorm cannot train on one row: a set whose training rows leave one over still trains."""
    pair = _pattern_set(tmp_path)
    cfg = train_config(epochs=2, **FAST)
    n_train = len(prepare_training_data(open_image_set(pair, scheme), scheme, cfg.val_frac, cfg.seed).train_rows)
    assert batch_bounds(n_train, n_train - 1) == [(0, n_train)]
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)] and batch_bounds(9, 4) == [(0, 4), (4, 9)]
    run = _train(pair, scheme, train_config(epochs=2, **{**FAST, "batch_size": n_train - 1}), tmp_path / "p.csv",
                 tmp_path / "m.zip")
    assert len(run.fit.history) == 2 and np.isfinite(run.fit.history["train_loss"]).all()


def test_same_seed_same_predictions(tmp_path, scheme):
    pair = _pattern_set(tmp_path)
    runs = [_train(pair, scheme, train_config(epochs=2, **FAST), tmp_path / f"p{i}.csv", tmp_path / f"m{i}.zip")
            for i in range(2)]
    a, b = (r.predictions["parasite output"].to_numpy() for r in runs)
    np.testing.assert_array_equal(a, b)


def test_bundle_round_trip_and_channel_check(tmp_path, scheme):
    pair = _pattern_set(tmp_path)
    run = _train(pair, scheme, train_config(epochs=2, **FAST), tmp_path / "p.csv", tmp_path / "model_perf.zip")
    bundle = load_bundle(tmp_path / "model_perf.zip")
    assert bundle.spec.class_names == ["non-parasite", "parasite"] and bundle.spec.in_channels == 2
    assert bundle.metrics["test"]["accuracy"] == run.metrics["test"]["accuracy"]
    assert {"train_seconds", "train_images_per_second"} <= set(bundle.metrics)
    assert str(pair.images) in bundle.params["inputs"] and "torch" in bundle.params["versions"]
    images = np.load(pair.images)
    probs = predict_with_bundle(bundle, images)
    np.testing.assert_allclose(probs[:, 1], run.predictions["parasite output"], atol=1e-5)
    with pytest.raises(InputError, match="3 channels but the model was trained on 2"):
        predict_with_bundle(bundle, np.zeros((4, 3, 9, 9), np.uint8), "new.npy")


def test_corrupt_or_foreign_bundle(tmp_path):
    bad = tmp_path / "model_perf.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a zip"):
        load_bundle(bad)
    import zipfile

    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("something.txt", "hello")
    with pytest.raises(InputError, match="not a model_perf bundle"):
        load_bundle(bad)


def test_resume_continues_from_saved_epoch(tmp_path, scheme):
    pair = _pattern_set(tmp_path)
    image_set = open_image_set(pair, scheme)
    ckpt = tmp_path / "checkpoint.pt"
    full = fit(image_set, scheme, train_config(epochs=4, **FAST))
    fit(image_set, scheme, train_config(epochs=2, **FAST), checkpoint_path=ckpt)
    resumed = fit(image_set, scheme, train_config(epochs=4, resume_from=ckpt, **FAST))
    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.history["train_loss"], full.history["train_loss"], rtol=1e-4)


def test_inference_copy_matches_the_eval_model():
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", 3, ["a", "b"], [0, 1], width=8)).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(5, 3, 13, 13)
    with torch.no_grad():
        torch.testing.assert_close(inference_copy(model)(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [({"arch": "resnet99"}, "'arch'"), ({"loss": "hinge"}, "'loss'"),
                                          ({"width": 2}, "'width'"), ({"epochs": 0}, "'epochs'")])
def test_bad_training_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        train_config(**kwargs)


def test_one_class_or_no_rows_fails_before_writing(tmp_path, scheme):
    rng = np.random.default_rng(0)
    one = write_set(tmp_path / "one", "one", rng.integers(0, 255, (20, 2, 9, 9)).astype(np.uint8), np.zeros(20))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="one class only"):
        _train(one, scheme, train_config(epochs=1, **FAST), tmp_path / "out" / "p.csv", tmp_path / "out" / "m.zip")
    none = write_set(tmp_path / "none", "none", rng.integers(0, 255, (5, 2, 9, 9)).astype(np.uint8), np.full(5, -1.0))
    with pytest.raises(InputError, match="no rows to train on"):
        _train(none, scheme, train_config(epochs=1, **FAST), tmp_path / "out" / "p.csv", tmp_path / "out" / "m.zip")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert set(snapshot(tmp_path)) - set(before) <= {str(none.images), str(none.ann)}


def test_unlabeled_rows_are_predicted_not_trained(tmp_path, scheme):
    pair = _pattern_set(tmp_path)
    ann = pd.read_csv(pair.ann)
    ann.loc[:19, "annotation"] = -0.8  # unsure relabeled as unlabeled
    ann.to_csv(pair.ann, index=False)
    run = fit(open_image_set(pair, scheme), scheme, train_config(epochs=1, **FAST))
    used = set(run.data.train_rows.tolist()) | set(run.data.val_rows.tolist())
    assert used and not used & set(range(20))
    assert (run.data.targets[:20] == -1).all()


def test_right_wrong_partitions_each_class(demo_layout, scheme, tmp_path):
    run = _train(demo_layout.certain, scheme, train_config(epochs=1, **FAST), tmp_path / "p.csv", tmp_path / "m.zip")
    written = split_right_wrong(run.image_set, run.predictions, scheme,
                                lambda c, w: demo_layout.right_wrong("s_b", c, w))
    for name in scheme.certain_names:
        rows, wrong = wrong_mask(run.predictions, name, scheme.ann_dict[name])
        w = open_image_set(written[f"{name}_wrong"], allow_empty=True)
        r = open_image_set(written[f"{name}_right"], allow_empty=True)
        assert len(w) + len(r) == len(rows)
        assert set(w.ann["image_id"]).isdisjoint(r.ann["image_id"])
        assert set(w.ann["image_id"]) | set(r.ann["image_id"]) == set(run.predictions["image_id"].iloc[rows])
        assert (w.ann[output_column(name)] < 0.5).all() and (r.ann[output_column(name)] >= 0.5).all()
        if len(w):
            first = run.predictions.index[run.predictions["image_id"] == w.ann["image_id"].iloc[0]][0]
            np.testing.assert_array_equal(w.images[0], run.image_set.images[first])


def _imbalanced_set(tmp_path, n=200, seed=1):
    """A quarter of class 1 (bright centre spot), no test rows: class weights have something to weigh."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.25).astype(float)
    images = rng.integers(0, 120, (n, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, 3:6, 3:6] = 250
    return write_set(tmp_path / "imbalanced", "imbalanced", images, labels)


@pytest.mark.parametrize("options", [
    {"loss": "cross_entropy"}, {"loss": "focal", "focal_gamma": 2.0}, {"label_smoothing": 0.1},
    {"class_weights": "balanced"}, {"loss": "focal", "label_smoothing": 0.1, "class_weights": "balanced"},
], ids=["cross_entropy", "focal", "label_smoothing", "class_weights", "all_together"])
def test_every_loss_option_trains_and_validates(tmp_path, scheme, options):
    image_set = open_image_set(_imbalanced_set(tmp_path), scheme)
    result = fit(image_set, scheme, train_config(**{**FAST, "epochs": 4, "lr": 3e-3, **options}))
    history = result.history
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_accuracy"].iloc[-1] > 0.9


def test_options_change_the_loss(tmp_path, scheme):
    image_set = open_image_set(_imbalanced_set(tmp_path), scheme)
    first_loss = {name: fit(image_set, scheme, train_config(**{**FAST, "epochs": 1, **opts})).history["train_loss"][0]
                  for name, opts in {"plain": {}, "balanced": {"class_weights": "balanced"}, "focal": {"loss": "focal"},
                                     "smoothed": {"label_smoothing": 0.2}}.items()}
    assert len({round(v, 6) for v in first_loss.values()}) == 4  # each option reaches the loss
    assert first_loss["focal"] < first_loss["plain"]  # (1 - p)^gamma < 1 down-weights every row


def test_patience_stops_when_validation_stops_improving(tmp_path, scheme):
    rng = np.random.default_rng(0)  # labels unrelated to the images: the validation loss soon stops improving
    pair = write_set(tmp_path / "noise", "noise", rng.integers(0, 255, (120, 2, 9, 9)).astype(np.uint8),
                     rng.integers(0, 2, 120).astype(float))
    result = fit(open_image_set(pair, scheme), scheme, train_config(**{**FAST, "epochs": 30, "lr": 3e-3, "patience": 2}))
    assert result.stopped_early and len(result.history) < 30
    best = int(result.history["val_loss"].to_numpy().argmin())
    assert len(result.history) == best + 1 + 2  # stopped exactly `patience` epochs after the best one
    assert result.best_epoch == best + 1  # and kept the best epoch's weights


def test_validation_has_its_own_loss_module(tmp_path, scheme, monkeypatch):
    """The validation loss is computed on the CPU; sharing (and moving) the training loss module would
    leave a CUDA run's class weights on the CPU for the next epoch."""
    import helpers.model.training as training

    seen: dict[str, list] = {"train": [], "val": []}
    train_one_epoch, evaluate = training.train_one_epoch, training.evaluate
    monkeypatch.setattr(training, "train_one_epoch", lambda *a, **k: seen["train"].append(a[5]) or train_one_epoch(*a, **k))
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: seen["val"].append(a[4]) or evaluate(*a, **k))
    fit(open_image_set(_imbalanced_set(tmp_path), scheme), scheme,
        train_config(**{**FAST, "epochs": 2, "class_weights": "balanced"}))
    assert all(t is seen["train"][0] for t in seen["train"]) and all(v is seen["val"][0] for v in seen["val"])
    assert seen["train"][0] is not seen["val"][0]
    assert seen["val"][0].weight.device.type == "cpu"
    torch.testing.assert_close(seen["train"][0].weight.cpu(), seen["val"][0].weight)
