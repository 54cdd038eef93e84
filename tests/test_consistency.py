"""Learning from what a strategy leaves unlabeled (issue 24, part 2): FixMatch's consistency loss
on the rows rounding below 0, a policy a strategy row names."""
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_set
from torch import nn

from helpers.core.errors import ParameterError
from helpers.curation.strategies import STRATEGIES, Strategy
from helpers.data.sets import open_image_set
from helpers.model.augment import strong_augment
from helpers.model.training import consistency_loss, fit
from helpers.run.parameters import train_config

FAST = dict(arch="resnet10", width=8, batch_size=32, progress=False, lr=3e-3)


def _half_unlabeled_set(tmp_path, n=240):
    """Class 1 carries a bright centre spot; rows 0-99 lost their label (pruned), 100-119 are test
    rows, rows 120-129 are excluded by a reviewer."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n).astype(float)
    images = rng.integers(0, 120, (n, 2, 9, 9)).astype(np.uint8)
    images[labels == 1, 0, 3:6, 3:6] = 250
    split = np.where((np.arange(n) >= 100) & (np.arange(n) < 120), "test", "train")
    exclude = (np.arange(n) >= 120) & (np.arange(n) < 130)
    labels[:100] = -1.0
    labels[120:130] = -1.0
    return write_set(tmp_path / "set", "set", images, labels, split=split, exclude=exclude)


def test_consistency_trains_on_the_unlabeled_training_rows_only(tmp_path, scheme):
    pair = _half_unlabeled_set(tmp_path)
    image_set = open_image_set(pair, scheme)
    run = fit(image_set, scheme, train_config(epochs=4, unlabeled="consistency", pseudo_threshold=0.6, **FAST))
    assert run.data.unlabeled_rows.tolist() == list(range(100))  # not the test rows, not the excluded ones
    share = run.history["pseudo_labelled"]
    assert share.between(0, 1).all() and share.iloc[-1] > 0.3  # a model that learned the spot is confident
    plain = fit(image_set, scheme, train_config(epochs=4, **FAST))
    assert "pseudo_labelled" not in plain.history  # the default ignores them, as before
    with torch.no_grad():
        x = torch.rand(8, 2, 9, 9)
        assert not torch.allclose(run.model.eval()(x), plain.model.eval()(x))


def test_a_threshold_nothing_reaches_leaves_the_unlabeled_rows_out(tmp_path, scheme):
    image_set = open_image_set(_half_unlabeled_set(tmp_path), scheme)
    run = fit(image_set, scheme, train_config(epochs=2, unlabeled="consistency", pseudo_threshold=1.0, **FAST))
    assert (run.history["pseudo_labelled"] < 0.2).all()


def test_the_strong_view_changes_the_look_but_keeps_the_spot():
    x = torch.full((16, 2, 11, 11), 0.2)
    x[:, 0, 5, 5] = 1.0  # a parasite-like spot at the centre
    views = [strong_augment(x, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*views) and views[0].shape == x.shape  # reproducible from the generator
    strong = views[0]
    assert not torch.allclose(strong[:, :, 0, 0], x[:, :, 0, 0])  # stain, brightness and noise differ
    brightest = strong[:, 0].flatten(1).argmax(1)
    rows, cols = brightest // 11, brightest % 11
    assert ((rows - 5).abs() <= 2).all() and ((cols - 5).abs() <= 2).all()  # no cutout: the spot stays


def test_the_policy_is_checked_and_named_by_a_strategy_row():
    with pytest.raises(ParameterError, match="unlabeled"):
        train_config(unlabeled="magic")
    with pytest.raises(ValueError, match="s_x: unlabeled must be one of"):
        Strategy("s_x", "s_b", "unlabeled", (), "x", "exclude", "fix", "magic")
    cons, fix = STRATEGIES["s_fix_cons"], STRATEGIES["s_fix"]
    assert cons.unlabeled == "consistency" and fix.unlabeled == "ignore"
    assert (cons.method, cons.wrong_labels) == (fix.method, fix.wrong_labels)
    with pytest.raises(ParameterError, match="pseudo_threshold"):
        train_config(pseudo_threshold=0.3)
    assert pd.notna(train_config().consistency_weight)


def test_the_loss_pulls_the_strong_view_towards_the_weak_views_pseudo_label():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 9, 2))
    with torch.no_grad():
        model[1].weight.mul_(0.1)
        model[1].bias.copy_(torch.tensor([0.0, 4.0]))  # every weak view: class 1 at ~0.98
    x = torch.rand(16, 2, 9, 9)
    cfg = train_config(augment="flips_rot90", pseudo_threshold=0.9)

    def strong_view_confidence() -> float:
        with torch.no_grad():
            return torch.softmax(model(strong_augment(x, torch.Generator().manual_seed(1))), 1)[:, 1].mean().item()

    before = strong_view_confidence()
    loss, confident = consistency_loss(model, x, cfg, torch.Generator().manual_seed(1))
    assert confident == 16 and loss.item() > 0
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 1.0 * p.grad
    assert strong_view_confidence() > before  # one step towards the pseudo-label

    model.zero_grad()
    strict = train_config(augment="flips_rot90", pseudo_threshold=0.999)  # no weak view is that sure
    loss, confident = consistency_loss(model, x, strict, torch.Generator().manual_seed(1))
    assert confident == 0 and loss.item() == 0 and not loss.requires_grad
