import numpy as np
import pandas as pd
import pytest

from helpers.core.atomic import OutputSet
from helpers.core.errors import InputError
from helpers.core.labels import round_annotations
from helpers.curation.relabel import relabel_sweep, relabel_unsure
from helpers.curation.right_wrong import split_right_wrong
from helpers.curation.strategies import (
    SEED_STRATEGIES,
    STRATEGIES,
    classifier_inputs,
    differentiator_inputs,
    get_strategy,
)
from helpers.data.combine_split import combine, split_by_class
from helpers.data.layout import Layout
from helpers.data.sets import open_image_set
from helpers.model.training import prepare_training_data
from helpers.run.config import check_parameters
from helpers.run.outcome import Outcome
from helpers.run.parameters import notebook_defaults
from helpers.run.steps import build_set, final_set


def fake_baseline(layout, run, source_pair, scheme, seed, classes):
    """Write a baseline's predictions with random outputs, then its right/wrong sets."""
    source = open_image_set(source_pair, scheme)
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(classes)), len(source))
    preds = source.ann.copy()
    for i, name in enumerate(classes):
        preds[f"{name} output"] = probs[:, i]
    with OutputSet() as out:
        out.csv(preds, layout.predictions(run))
    split_right_wrong(source, preds, scheme, lambda c, w: layout.right_wrong(run, c, w))
    return preds


@pytest.fixture
def strategy_layout(tiny_demo, scheme, tmp_path):
    layout = Layout(tiny_demo["data_dir"], tiny_demo["data_dir_n"], tmp_path / "runs", scheme)
    combine(layout.default_sources, layout.combined, scheme, test_frac=0.2, seed=0)
    split_by_class(layout.combined, scheme)
    fake_baseline(layout, "s_a", layout.combined, scheme, 1, ["non-parasite", "parasite", "unsure"])
    fake_baseline(layout, "s_b", layout.certain, scheme, 2, ["non-parasite", "parasite"])
    return layout


def test_the_table_has_the_six_seed_strategies():
    assert sorted(SEED_STRATEGIES) == ["s_1a", "s_1b", "s_2a", "s_2b", "s_3a", "s_3b"]
    assert get_strategy("s_2b").baseline == "s_b" and get_strategy("s_3a").unsure_role == "unlabeled"
    with pytest.raises(ValueError, match="strategy"):
        get_strategy("s_9z")


@pytest.mark.parametrize("name", SEED_STRATEGIES)
def test_differentiator_inputs_counts_values_and_excluded_rows(strategy_layout, scheme, name):
    strategy = STRATEGIES[name]
    inputs = differentiator_inputs(strategy, strategy_layout)
    n_unsure = len(open_image_set(strategy_layout.class_set("unsure")))
    wrong = {c: open_image_set(strategy_layout.right_wrong(strategy.baseline, c, "wrong"), allow_empty=True)
             for c in ("non-parasite", "parasite")}
    ann = build_set(inputs, strategy_layout.run_set(name, "diff"), scheme).table
    expected_wrong = ["non-parasite"] + (["parasite"] if name[2] in "23" else [])
    assert len(ann) == n_unsure + sum(len(wrong[c]) for c in expected_wrong)
    assert (ann["input"] == "unsure").sum() == n_unsure
    unsure_value = 0.8 if name[2] in "12" else -0.8
    assert set(ann.loc[ann["input"] == "unsure", "annotation"]) == {unsure_value}
    for c in expected_wrong:
        rows = ann["input"] == f"wrong {c}"
        assert rows.sum() == len(wrong[c])
        assert set(ann.loc[rows, "annotation"]) <= {float(scheme.ann_dict[c])}
        assert ann.loc[rows, "image_id"].tolist() == wrong[c].ann["image_id"].tolist()
    images = np.load(strategy_layout.run_set(name, "diff").images)
    assert len(images) == len(ann)
    data = prepare_training_data(open_image_set(strategy_layout.run_set(name, "diff"), scheme), scheme, 0.3, 0)
    unsure_rows = np.flatnonzero((ann["input"] == "unsure").to_numpy())
    trained = set(data.train_rows) | set(data.val_rows)
    if unsure_value < 0:  # unlabeled unsures are predicted, never trained on
        assert not trained & set(unsure_rows)
    else:
        assert set(unsure_rows) <= trained
    assert not trained & set(np.flatnonzero((ann["split"] == "test").to_numpy()))


def test_classifier_inputs_add_relabeled_unsures(strategy_layout, scheme):
    strategy = STRATEGIES["s_1a"]
    unsure = open_image_set(strategy_layout.class_set("unsure")).ann
    diff = unsure.assign(**{"parasite output": np.linspace(0, 1, len(unsure))})
    relabeled = relabel_unsure(unsure, diff, scheme, 0.9)
    with OutputSet() as out:
        out.csv(relabeled, strategy_layout.relabeled("s_1a", 0.9))
    ann = build_set(classifier_inputs(strategy, strategy_layout, 0.9), strategy_layout.run_set("s_1a", "cl"), scheme).table
    n_certain = len(open_image_set(strategy_layout.certain).ann)
    assert len(ann) == n_certain + len(unsure)
    assert ann["is_gt"].tolist() == [True] * n_certain + [False] * len(unsure)
    assert set(round_annotations(ann["annotation"])) <= {0, 1}


def test_relabel_rule_at_the_threshold_edges(scheme):
    unsure = pd.DataFrame({"annotation": [2.0] * 4, "image_id": list("abcd"), "fov": [1, 2, 3, 4]})
    diff = pd.DataFrame({"image_id": list("dcba"), "parasite output": [0.95, 0.9000001, 0.9, 0.1]})
    out = relabel_unsure(unsure, diff, scheme, 0.9)
    assert out["annotation"].tolist() == [0.0, 0.0, 1.0, 1.0]  # a=0.1, b=0.9 (not above), c, d above
    assert out["relabel_score"].tolist() == [0.1, 0.9, 0.9000001, 0.95]
    assert (~out["is_gt"]).all() and out["fov"].tolist() == [1, 2, 3, 4]
    assert relabel_sweep(np.array([0.1, 0.5, 0.95]), [0.05, 0.5, 0.99])["to positive"].tolist() == [3, 1, 0]


def test_relabel_fails_clearly_when_predictions_are_missing(scheme):
    unsure = pd.DataFrame({"annotation": [2.0, 2.0], "image_id": ["a", "b"]})
    with pytest.raises(InputError, match="1 unsure image"):
        relabel_unsure(unsure, pd.DataFrame({"image_id": ["a"], "parasite output": [0.5]}), scheme, 0.9, "diff.csv")
    with pytest.raises(InputError, match="'parasite output'"):
        relabel_unsure(unsure, pd.DataFrame({"image_id": ["a", "b"]}), scheme, 0.9, "diff.csv")


def test_a_step_that_did_not_apply_passes_through(strategy_layout):
    skipped = Outcome.not_applicable("one class only")
    layout = strategy_layout
    folders = {"data_dir": str(layout.data_dir), "data_dir_n": str(layout.data_dir_n),
               "data_dir_base": str(layout.data_dir_base)}
    cfg = check_parameters("05_relabel_and_classify", {**notebook_defaults("05_relabel_and_classify"), **folders})
    assert final_set(STRATEGIES["s_1a"], cfg, skipped) is skipped
    assert not strategy_layout.run_set("s_1a", "cl").images.exists()
