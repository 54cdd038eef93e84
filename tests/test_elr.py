"""Early-learning regularization (helpers.model.elr): the running averages, the penalty, and a fit
that memorises fewer wrong labels with it than without."""
import numpy as np
import pytest
import torch
from conftest import write_set

from helpers.core.errors import ParameterError
from helpers.data.sets import open_image_set
from helpers.model.elr import EarlyLearningTargets, elr_penalty
from helpers.model.inference import predict_probabilities
from helpers.model.training import fit
from helpers.run.parameters import train_config


def test_the_averages_keep_beta_of_the_old_and_take_the_rest_from_the_new_prediction():
    elr = EarlyLearningTargets(5, 2, beta=0.7, device=torch.device("cpu"))
    first, second = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    p1, p2 = torch.softmax(first, 1), torch.softmax(second, 1)
    after_one = elr.update(first, np.array([1, 3]))
    torch.testing.assert_close(after_one, 0.3 * p1)
    after_two = elr.update(second, np.array([1, 3]))
    torch.testing.assert_close(after_two, 0.7 * 0.3 * p1 + 0.3 * p2)
    assert elr.targets[[0, 2, 4]].abs().sum() == 0  # rows not in a batch keep their averages


def test_the_penalty_is_lowest_where_the_prediction_agrees_with_the_average_and_pulls_towards_it():
    average = torch.tensor([[0.9, 0.1]])
    agreeing, contradicting = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert elr_penalty(agreeing, average) < elr_penalty(contradicting, average)
    logits = contradicting.clone().requires_grad_(True)
    elr_penalty(logits, average).backward()
    stepped = logits.detach() - 0.5 * logits.grad
    assert torch.softmax(stepped, 1)[0, 0] > torch.softmax(contradicting, 1)[0, 0]


@pytest.mark.slow
def test_a_fit_with_elr_memorises_fewer_wrong_labels(tmp_path, scheme):
    rng = np.random.default_rng(0)
    n = 200
    truth = rng.integers(0, 2, n)
    images = rng.integers(0, 100, (n, 2, 9, 9)).astype(np.uint8)
    for i in np.flatnonzero(truth == 1):
        y, x = rng.choice([0, 6], 2)
        images[i, 0, y:y + 3, x:x + 3] = 250
    labels = truth.astype(float)
    flipped = rng.choice(n, 40, replace=False)
    labels[flipped] = 1 - labels[flipped]
    pair = write_set(tmp_path / "spots", "spots", images, labels)
    memorised = {}
    for lam in (0.0, 3.0):
        cfg = train_config(arch="resnet10", width=8, batch_size=32, progress=False, epochs=40, lr=0.01,
                           keep_weights="last", val_frac=0.2, elr_lambda=lam)
        result = fit(open_image_set(pair, scheme), scheme, cfg)
        wrong = np.intersect1d(result.data.train_rows, flipped)
        memorised[lam] = (predict_probabilities(result.model, images)[wrong].argmax(1) == labels[wrong]).mean()
    assert memorised[0.0] == 1.0 and memorised[3.0] < memorised[0.0]


def test_elr_with_mixup_is_refused_naming_it():
    with pytest.raises(ParameterError, match="elr_lambda"):
        train_config(elr_lambda=3.0, mixup_alpha=0.4)
