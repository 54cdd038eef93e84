"""The training recipe's parts, each a parameter: augmentation, test-time augmentation, optimizer and
schedule, model selection, calibration. With their defaults training is the origin's."""
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_set

from helpers.core.errors import ParameterError
from helpers.curation.out_of_fold import FoldSettings
from helpers.curation.training_run import TrainRequest, train_and_save
from helpers.data.sets import open_image_set
from helpers.metrics import expected_calibration_error
from helpers.model.augment import augment_batch, draw_mix, mix_inputs, symmetries, symmetry
from helpers.model.bundle import load_bundle, predict_with_bundle
from helpers.model.inference import (
    best_temperature,
    model_views,
    predict_features,
    predict_probabilities,
    predict_probabilities_and_features,
)
from helpers.model.networks import ModelSpec, build_model
from helpers.model.training import fit, for_training_rows, make_optimizer, make_scheduler, mixed_loss
from helpers.run.config import check_parameters
from helpers.run.parameters import notebook_defaults, train_config

FAST = dict(arch="resnet10", width=8, batch_size=32, progress=False)


def _spot_set(tmp_path, n=200, seed=0, relabeled=0):
    """Class 1 has a bright spot at a random corner: a label no symmetry changes. `relabeled` rows
    carry 0.8 / 0.2, like relabeled unsures."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(float)
    images = rng.integers(0, 100, (n, 2, 9, 9)).astype(np.uint8)
    for i in np.flatnonzero(labels == 1):
        y, x = rng.choice([0, 6], 2)
        images[i, 0, y:y + 3, x:x + 3] = 250
    labels[:relabeled] = np.where(labels[:relabeled] == 1, 0.8, 0.2)
    return write_set(tmp_path / "spots", "spots", images, labels)


def test_augmentation_gives_each_image_one_of_its_symmetries_and_keeps_shapes():
    x = torch.rand(64, 3, 7, 7)
    out = augment_batch(x, "flips_rot90", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    views = torch.stack([symmetry(x, k) for k in range(8)])  # (8, N, C, H, W)
    matches = (views == out[None]).flatten(2).all(dim=2)  # which symmetry each output is
    assert (matches.sum(dim=0) == 1).all()  # exactly one for every image: nothing else changed
    assert len(matches.float().argmax(dim=0).unique()) == 8  # and all eight occur
    assert augment_batch(x, "none", torch.Generator()) is x


def test_non_square_images_only_flip_and_half_turn():
    assert symmetries(7, 9) == [0, 2, 4, 6]
    x = torch.rand(32, 1, 7, 9)
    assert augment_batch(x, "flips_rot90", torch.Generator().manual_seed(0)).shape == x.shape


def test_shifts_move_images_by_at_most_two_pixels():
    x = torch.zeros(200, 1, 11, 11)
    x[:, :, 5, 5] = 1.0  # one bright pixel in the middle
    out = augment_batch(x, "flips_rot90_shift", torch.Generator().manual_seed(0))
    where = out[:, 0].flatten(1).argmax(dim=1)
    rows, cols = where // 11, where % 11
    assert out.shape == x.shape and (out.flatten(1).sum(1) == 1).all()
    assert ((rows - 5).abs() <= 2).all() and ((cols - 5).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 25  # every shift occurs


def test_augmented_training_keeps_labels_and_learns(tmp_path, scheme):
    image_set = open_image_set(_spot_set(tmp_path), scheme)
    result = fit(image_set, scheme, train_config(**{**FAST, "epochs": 6, "lr": 3e-3, "augment": "flips_rot90_shift"}))
    assert result.history["val_accuracy"].iloc[-1] > 0.9


def test_tta_output_is_invariant_to_rotating_the_input():
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet10", 2, ["a", "b"], [0, 1], width=8, tta=True)).eval()
    images = np.random.default_rng(0).integers(0, 255, (10, 2, 9, 9)).astype(np.uint8)
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3)))
    mirrored = np.ascontiguousarray(images[:, :, :, ::-1])
    base = predict_probabilities(model, images)
    np.testing.assert_allclose(predict_probabilities(model, turned), base, atol=1e-5)
    np.testing.assert_allclose(predict_probabilities(model, mirrored), base, atol=1e-5)
    model.spec.tta = False  # without TTA a rotation does change the output
    assert not np.allclose(predict_probabilities(model, turned), predict_probabilities(model, images), atol=1e-5)


def test_view_mean_features_are_the_same_for_an_image_and_its_symmetries():
    """What neighbour flags compare: an image and its turned or mirrored copy are one point, not eight."""
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet10", 2, ["a", "b"], [0, 1], width=8, tta=True)).eval()
    images = np.random.default_rng(0).integers(0, 255, (10, 2, 9, 9)).astype(np.uint8)
    turned = np.ascontiguousarray(np.rot90(images, 3, axes=(2, 3))[:, :, ::-1])
    base = predict_features(model, images, view_mean=True)
    assert base.shape == (10, model.n_features)
    np.testing.assert_allclose(predict_features(model, turned, view_mean=True), base, atol=1e-5)
    assert not np.allclose(predict_features(model, turned), predict_features(model, images), atol=1e-5)
    for view_mean, expected in ((True, base), (False, predict_features(model, images))):  # the one pass 03 takes
        probs, features = predict_probabilities_and_features(model, images, batch_size=4, view_mean=view_mean)
        np.testing.assert_array_equal(probs, predict_probabilities(model, images, batch_size=4))
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)


def test_temperature_scaling_lowers_ece_on_an_overconfident_toy():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = torch.tensor(np.stack([np.zeros(4000), 4 * true_logit], axis=1), dtype=torch.float32)[None]  # 4x too sure
    before = expected_calibration_error(labels, torch.softmax(logits[0], 1).numpy())
    t = best_temperature(logits, labels)
    after = expected_calibration_error(labels, torch.softmax(logits[0] / t, 1).numpy())
    assert t == pytest.approx(4.0, rel=0.15)
    assert after < before / 3 and after < 0.03  # 0.183 -> 0.021 here; bins on 4000 rows leave about 0.02


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    # bins of width 1/15: 0.9 and 0.8 alone (both right); 0.7 (right) and 0.6 (wrong) alone
    assert expected_calibration_error(np.array([0, 0, 1, 0]), probs) == pytest.approx(
        (0.1 + 0.2 + 0.3 + 0.6) / 4)


def test_calibrated_model_keeps_its_temperature_in_the_bundle(tmp_path, scheme):
    pair = _spot_set(tmp_path)
    cfg = train_config(**{**FAST, "epochs": 3, "lr": 3e-3, "calibrate": True, "tta": True})
    run = train_and_save(pair, scheme, TrainRequest(cfg, tmp_path / "p.csv", tmp_path / "model_perf.zip"))
    bundle = load_bundle(tmp_path / "model_perf.zip")
    assert bundle.spec.tta and bundle.spec.temperature == pytest.approx(run.fit.spec.temperature) != 1.0
    probs = predict_with_bundle(bundle, np.load(pair.images))
    np.testing.assert_allclose(probs[:, 1], run.predictions["parasite output"], atol=1e-5)
    assert 0 <= run.metrics["val"]["ece"] <= 1


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedules_warm_up_then_decay(schedule):
    model = build_model(ModelSpec("resnet10", 1, ["a", "b"], [0, 1], width=4))
    cfg = train_config(**{**FAST, "epochs": 10, "lr": 0.01, "schedule": schedule, "optimizer": "adamw",
                          "weight_decay": 0.05})
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=20)
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = int(np.argmax(lrs))
    assert lrs[0] < 0.5 * lrs[peak] and lrs[peak] == pytest.approx(0.01, rel=0.05)
    assert 10 <= peak <= 70 and lrs[-1] < 0.01 * lrs[peak]
    assert make_scheduler(optimizer, train_config(**FAST), 20) is None  # constant: the origin's


def test_a_set_too_small_for_min_steps_trains_more_epochs_and_a_larger_one_as_given(tmp_path, scheme):
    cfg = train_config(**{**FAST, "batch_size": 64, "epochs": 10, "min_steps": 250})
    assert for_training_rows(cfg, 983).epochs == 16  # 16 batches of 64 an epoch: 160 steps in 10 epochs
    assert for_training_rows(cfg, 3103) is cfg  # 49 batches an epoch: 490 steps, as given
    assert for_training_rows(train_config(**{**FAST, "batch_size": 64, "epochs": 10}), 983).epochs == 10  # off by default
    image_set = open_image_set(_spot_set(tmp_path), scheme)
    result = fit(image_set, scheme, train_config(**{**FAST, "epochs": 2, "min_steps": 12}))
    steps_per_epoch = -(-len(result.data.train_rows) // 32)
    assert len(result.history) == -(-12 // steps_per_epoch) > 2


def test_select_by_accuracy_on_certain_rows_keeps_that_epoch(tmp_path, scheme):
    image_set = open_image_set(_spot_set(tmp_path, relabeled=60), scheme)
    result = fit(image_set, scheme, train_config(**{**FAST, "epochs": 5, "lr": 3e-3, "select_by": "val_accuracy"}))
    history = result.history
    assert {"val_accuracy_certain", "val_roc_auc_certain"} <= set(history.columns)
    assert result.best_epoch == int(history["val_accuracy_certain"].to_numpy().argmax()) + 1
    assert not result.data.certain[:60].any() and result.data.certain[60:].all()


def test_resume_continues_the_schedule_and_the_augmentation(tmp_path, scheme, monkeypatch):
    import helpers.model.training as training

    image_set = open_image_set(_spot_set(tmp_path), scheme)
    cfg = train_config(**{**FAST, "epochs": 4, "lr": 3e-3, "schedule": "onecycle", "optimizer": "adamw",
                          "weight_decay": 0.01, "augment": "flips_rot90"})
    full = fit(image_set, scheme, cfg)
    checkpoint, save = tmp_path / "checkpoint.pt", training.save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        epoch = args[4]
        if epoch == 1:
            raise KeyboardInterrupt  # the run is stopped after its second epoch

    monkeypatch.setattr(training, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit(image_set, scheme, cfg, checkpoint_path=checkpoint)
    monkeypatch.undo()
    resumed = fit(image_set, scheme, train_config(**{**cfg.to_dict(), "resume_from": checkpoint}))
    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.history["train_loss"], full.history["train_loss"], rtol=1e-4)


def test_fold_ensemble_predicts_unseen_rows_with_the_fold_models_mean_and_keeps_them(tmp_path, scheme):
    pair = _spot_set(tmp_path, n=240)
    split = np.where(np.arange(240) < 40, "test", "")
    pd.read_csv(pair.ann).assign(split=split).to_csv(pair.ann, index=False)
    cfg = train_config(**{**FAST, "epochs": 2, "tta": True})
    single = train_and_save(pair, scheme, TrainRequest(cfg, tmp_path / "a.csv", tmp_path / "a.zip",
                                                       out_of_fold=FoldSettings(3)))
    run = train_and_save(pair, scheme, TrainRequest(cfg, tmp_path / "b.csv", tmp_path / "b.zip",
                                                    out_of_fold=FoldSettings(3, ensemble=True)))
    bundle = load_bundle(tmp_path / "b.zip")
    assert len(bundle.fold_models) == 3 and all(m.spec.tta for m in bundle.fold_models)
    assert load_bundle(tmp_path / "a.zip").fold_models == []
    images = np.load(pair.images)
    mean = np.mean([predict_probabilities(m, images) for m in bundle.fold_models], axis=0)
    np.testing.assert_allclose(predict_with_bundle(bundle, images), mean, atol=1e-5)
    test = run.predictions["split"].eq("test").to_numpy()
    np.testing.assert_allclose(run.predictions.loc[test, "parasite output"], mean[test, 1], atol=1e-5)
    # the trainable rows keep the final model's own outputs; only the unseen rows changed
    np.testing.assert_allclose(run.predictions.loc[~test, "parasite output"],
                               single.predictions.loc[~test, "parasite output"], atol=1e-5)
    assert not np.allclose(run.predictions.loc[test, "parasite output"],
                           single.predictions.loc[test, "parasite output"], atol=1e-3)
    assert run.metrics["out_of_fold"]["fold_ensemble"] is True


def test_fold_ensemble_without_out_of_fold_is_refused_before_training(tmp_path, scheme):
    values = {**notebook_defaults("03_baselines_SA_SB"), "data_dir_base": str(tmp_path / "runs"), "fold_ensemble": True}
    with pytest.raises(ParameterError, match="fold_ensemble.*out_of_fold"):
        check_parameters("03_baselines_SA_SB", values)
    assert not (tmp_path / "runs").exists()


def test_tta_views_predicts_from_the_first_quarter_turns_and_the_bundle_keeps_it(tmp_path, scheme):
    pair = _spot_set(tmp_path)
    cfg = train_config(**{**FAST, "epochs": 1, "tta": True, "tta_views": 4})
    run = train_and_save(pair, scheme, TrainRequest(cfg, tmp_path / "p.csv", tmp_path / "model_perf.zip"))
    bundle = load_bundle(tmp_path / "model_perf.zip")
    images = np.load(pair.images)
    assert bundle.spec.tta_views == 4 and model_views(bundle.model, images) == [0, 1, 2, 3]
    model = bundle.model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(images.astype(np.float32) / 255)
        turns = torch.stack([torch.softmax(model(symmetry(x, code)), 1) for code in range(4)]).mean(0)
    np.testing.assert_allclose(run.predictions["parasite output"], turns[:, 1].numpy(), atol=1e-5)
    with pytest.raises(ParameterError, match="tta_views"):
        train_config(tta_views=9)


def test_mixup_mixes_inputs_and_targets_in_the_drawn_proportion():
    x = torch.arange(4 * 2 * 3 * 3, dtype=torch.float32).reshape(4, 2, 3, 3)
    mix = draw_mix(4, 0.4, np.random.default_rng(0), torch.device("cpu"))
    again = draw_mix(4, 0.4, np.random.default_rng(0), torch.device("cpu"))
    assert 0 < mix.share < 1 and mix.share == again.share and torch.equal(mix.partner, again.partner)
    assert sorted(mix.partner.tolist()) == [0, 1, 2, 3]
    p = mix.partner
    torch.testing.assert_close(mix_inputs(x, mix), mix.share * x + (1 - mix.share) * x[p])
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    ce = torch.nn.CrossEntropyLoss()
    expected = mix.share * ce(logits, y) + (1 - mix.share) * ce(logits, y[p])
    torch.testing.assert_close(mixed_loss(logits, y, ce, None, None, mix), expected)
    # per-row losses with sample weights: each side is the weighted mean under its own rows' weights
    per_row, w = torch.nn.CrossEntropyLoss(reduction="none"), torch.tensor([1.0, 2.0, 0.5, 1.0])
    own = (per_row(logits, y) * w).sum() / w.sum()
    partners = (per_row(logits, y[p]) * w[p]).sum() / w[p].sum()
    torch.testing.assert_close(mixed_loss(logits, y, per_row, None, w, mix), mix.share * own + (1 - mix.share) * partners)
    assert mixed_loss(logits, y, ce, None, None, None) == ce(logits, y)  # no mix: the plain loss


def test_a_fit_trains_with_mixup_and_a_bad_alpha_is_refused(tmp_path, scheme):
    image_set = open_image_set(_spot_set(tmp_path), scheme)
    plain = fit(image_set, scheme, train_config(**{**FAST, "epochs": 2}))
    mixed = fit(image_set, scheme, train_config(**{**FAST, "epochs": 2, "mixup_alpha": 0.4}))
    assert len(mixed.history) == 2 and np.isfinite(mixed.history["train_loss"]).all()
    assert not np.allclose(mixed.history["train_loss"], plain.history["train_loss"])
    with pytest.raises(ParameterError, match="mixup_alpha"):
        train_config(mixup_alpha=-1)
