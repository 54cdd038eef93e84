"""The one protocol for what a step produced, and the steps that return it."""
import numpy as np
import pytest
from conftest import write_set
from matplotlib.figure import Figure

from helpers.core.errors import NotTrainable
from helpers.run.config import check_parameters
from helpers.run.outcome import Outcome
from helpers.run.parameters import notebook_defaults
from helpers.run.steps import baseline, train


def test_a_step_that_did_not_apply_is_passed_on_and_says_why(capsys):
    skipped = Outcome.not_applicable("the differentiator saw one class only")
    assert "NOT APPLICABLE: the differentiator saw one class only" in capsys.readouterr().out
    assert not skipped.applies and skipped.status == "not applicable"
    assert skipped.then(lambda: pytest.fail("a later step ran")) is skipped
    figure = skipped.figure("loss_curve")
    assert isinstance(figure, Figure) and "Not applicable: the differentiator saw one class only" in figure.axes[0].texts[0].get_text()
    assert skipped.metrics("05_relabel_and_classify", strategy="s_1a") == {
        "step": "05_relabel_and_classify", "status": "not applicable",
        "reason": "the differentiator saw one class only", "strategy": "s_1a"}
    assert skipped.status_frame().to_dict("records") == [{"status": "not applicable",
                                                          "reason": "the differentiator saw one class only"}]


def test_an_applied_step_runs_the_next_and_reports_its_details():
    proposed = Outcome(Outcome.PROPOSED, "No differentiator trained.", details={"method": "ceal"})
    assert proposed.applies and proposed.status == "ok"
    assert proposed.then(lambda: Outcome(Outcome.BUILT)).kind == "built"
    assert "No differentiator trained." in proposed.figure("confusion_matrix").axes[0].texts[0].get_text()
    assert proposed.metrics("04_differentiator", strategy="s_ceal") == {
        "step": "04_differentiator", "status": "ok", "method": "ceal", "strategy": "s_ceal"}


def _config(tmp_path):
    values = {**notebook_defaults("05_relabel_and_classify"), "data_dir": str(tmp_path / "d"),
              "data_dir_n": str(tmp_path / "n"), "data_dir_base": str(tmp_path / "runs"),
              "arch": "resnet10", "width": 8, "epochs": 1, "batch_size": 32}
    return check_parameters("05_relabel_and_classify", values)


def test_training_a_set_of_one_class_does_not_apply_and_removes_stale_outputs(tmp_path, scheme):
    rng = np.random.default_rng(0)
    one_class = write_set(tmp_path / "set", "one", rng.integers(0, 255, (20, 2, 9, 9)).astype(np.uint8), np.zeros(20))
    cfg = _config(tmp_path)
    stale = cfg.layout.predictions("s_1a", "cl")
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    outcome = train(one_class, cfg, cfg.train_request("s_1a", "cl"))
    assert not outcome.applies and "one class only" in outcome.reason
    assert not stale.exists()


def test_a_baseline_that_cannot_train_stops_with_the_reason(tmp_path, scheme):
    rng = np.random.default_rng(0)
    one_class = write_set(tmp_path / "set", "one", rng.integers(0, 255, (20, 2, 9, 9)).astype(np.uint8), np.zeros(20))
    values = {**notebook_defaults("03_baselines_SA_SB"), "data_dir_base": str(tmp_path / "runs"),
              "arch": "resnet10", "width": 8, "epochs": 1, "batch_size": 32}
    with pytest.raises(NotTrainable, match="one class only"):
        baseline("s_b", one_class, check_parameters("03_baselines_SA_SB", values))
