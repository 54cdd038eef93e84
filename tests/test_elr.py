"""Early-learning regularization (helpers.model.elr): the running averages, the penalty, and a fit
that memorises fewer wrong labels with it than without."""
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisy_spots

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
    pair, truth = noisy_spots(tmp_path / "spots", n=200, flip=0.2, unlabeled=0)
    labels = pd.read_csv(pair.ann)["annotation"].to_numpy()
    flipped = np.flatnonzero(labels != truth)
    memorised = {}
    for lam in (0.0, 10.0):  # a strong weight: on this toy the effect is then clear at any thread count
        cfg = train_config(arch="resnet10", width=8, batch_size=32, progress=False, epochs=40, lr=0.01,
                           keep_weights="last", val_frac=0.2, elr_lambda=lam)
        result = fit(open_image_set(pair, scheme), scheme, cfg)
        wrong = np.intersect1d(result.data.train_rows, flipped)
        memorised[lam] = (predict_probabilities(result.model, np.load(pair.images))[wrong].argmax(1) == labels[wrong]).mean()
    assert memorised[0.0] > 0.7 and memorised[10.0] < 0.2  # without ELR most wrong labels are learnt


def test_elr_with_mixup_is_refused_naming_it():
    with pytest.raises(ParameterError, match="elr_lambda"):
        train_config(elr_lambda=3.0, mixup_alpha=0.4)
