"""A verdict you can trust: verified test labels, the test-review queue, the simulated reviewer,
step-down corrected tests against SB, and groups kept whole by the test split and the folds."""
import numpy as np
import pandas as pd
import pytest
from conftest import write_set

from helpers.core.errors import InputError, ParameterError
from helpers.curation.compare import (
    RunRecord,
    comparison_table,
    queue_test_rows,
    read_verified,
    simulated_review,
)
from helpers.curation.out_of_fold import fold_assignment
from helpers.curation.test_review import estimated_label_errors, review_queue
from helpers.curation.verdict_rule import verdict
from helpers.data.combine_split import combine
from helpers.data.layout import Layout
from helpers.data.verified import VerifiedStore, verified_labels
from helpers.metrics import stepdown_adjusted
from helpers.run.config import check_parameters
from helpers.run.parameters import NOTEBOOK_PARAMETERS, notebook_defaults

IDS = [f"img:{i}" for i in range(6)]
LABELS = [1, 1, 1, 0, 0, 0]  # annotated; img:2 is truly a non-parasite, mislabelled parasite


@pytest.fixture
def layout(tmp_path, scheme):
    layout = Layout(tmp_path / "d", tmp_path / "n", tmp_path / "runs", scheme)
    layout.data_dir.mkdir()
    layout.data_dir_base.mkdir()
    ann = pd.DataFrame({"annotation": [*LABELS, 1.0, 2.0], "image_id": [*IDS, "train:0", "unsure:0"],
                        "split": ["test"] * 6 + ["train", "train"]})
    ann.rename_axis("index").to_csv(layout.combined.ann)
    return layout


def record(name: str, parasite: list[float]) -> RunRecord:
    preds = pd.DataFrame({"image_id": IDS, "parasite output": parasite, "non-parasite output": 1 - np.asarray(parasite)})
    return RunRecord(name, "ok", predictions=preds)


@pytest.fixture
def records():
    return {"s_b": record("s_b", [0.9, 0.8, 0.9, 0.2, 0.1, 0.1]),  # copies the annotators' error on img:2
            "s_fix": record("s_fix", [0.9, 0.8, 0.2, 0.2, 0.1, 0.1])}  # calls img:2 what it is


def _verified_file(path, rows):
    store = VerifiedStore(path, who="tester")
    for image_id, label, annotated in rows:
        store.add([image_id], label, annotated=[annotated])
    return path


# ---------------------------------------------------------------- verified labels: scoring only, checked

def test_a_verified_label_changes_the_score_and_the_summary_says_so(layout, records, tmp_path):
    plain, _ = comparison_table(records, layout, None, primary="accuracy", n_bootstrap=0)
    assert plain.loc["s_b", "accuracy"] == 1.0 and plain.loc["s_fix", "accuracy"] == pytest.approx(5 / 6)
    verified = verified_labels(_verified_file(tmp_path / "v.csv", [("img:2", "non-parasite", "parasite")]),
                               pd.read_csv(layout.combined.ann), layout.scheme)
    table, result = comparison_table(records, layout, None, verified=verified, primary="accuracy", n_bootstrap=0)
    assert table.loc["s_b", "accuracy"] == pytest.approx(5 / 6) and table.loc["s_fix", "accuracy"] == 1.0
    assert result["verified_rows"] == 1 and result["verified_labels_changed"] == 1 and result["test_rows"] == 6
    assert result["best"] == "s_fix" and result["without_verified"]["best"] == "s_b"


@pytest.mark.parametrize("row,problem", [
    (("nowhere:9", "parasite", "parasite"), "line 2: image 'nowhere:9' is not in the combined set"),
    (("train:0", "parasite", "parasite"), "line 2: image 'train:0' is not a test row"),
    (("img:0", "unsure", "parasite"), "line 2: label 'unsure' is not one of the certain classes"),
    (("img:0", "parasit", "parasite"), "line 2: label 'parasit' is not one of the certain classes"),
])
def test_bad_verified_labels_are_refused_naming_the_file_and_line(layout, tmp_path, row, problem):
    path = _verified_file(tmp_path / "verified.csv", [row])
    with pytest.raises(InputError, match=f"verified.csv: {problem}"):
        read_verified(str(path), layout)


def test_the_latest_verified_label_wins_and_undo_takes_back_the_last_action(layout, tmp_path):
    path = _verified_file(tmp_path / "v.csv", [("img:2", "non-parasite", "parasite"), ("img:2", "parasite", "parasite")])
    assert read_verified(str(path), layout).set_index("image_id").loc["img:2", "value"] == 1
    assert VerifiedStore(path).undo() == 1
    verified = read_verified(str(path), layout)
    assert verified.set_index("image_id").loc["img:2", "value"] == 0 and verified["who"].tolist() == ["tester"]


# ---------------------------------------------------------------- the queue and the simulated reviewer

def _outputs(positive_scores: dict[str, list[float]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (np.array(score), np.array(score) > 0.5) for name, score in positive_scores.items()}


def test_the_queue_puts_the_most_suspect_test_labels_first(scheme):
    queue = review_queue(np.array(IDS), np.array(LABELS), _outputs({"a": [0.9, 0.8, 0.1, 0.2, 0.1, 0.6],
                                                                    "b": [0.9, 0.9, 0.2, 0.1, 0.1, 0.4]}), scheme)
    # img:5 (a non-parasite scored 0.5) splits the runs; img:2 (a parasite scored 0.15) is suspect, but
    # both runs call it non-parasite, so its label moves both scores alike
    assert queue["image_id"].tolist()[:2] == ["img:5", "img:2"]
    assert queue["priority"].iloc[0] == pytest.approx(0.5) and (queue["priority"].iloc[1:] == 0).all()
    assert queue["mean positive score"].iloc[1] == pytest.approx(0.15) and queue.index[0] == 1
    assert (np.diff(queue["label_quality"].iloc[1:]) >= 0).all()  # the rest: most suspect first
    assert estimated_label_errors(np.array(LABELS), np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])) == 0


def test_the_queue_puts_rows_where_the_runs_disagree_first_most_suspect_first(scheme):
    outputs = _outputs({"a": [0.9, 0.6, 0.6, 0.1, 0.4, 0.1], "b": [0.9, 0.4, 0.4, 0.1, 0.55, 0.1],
                        "c": [0.9, 0.4, 0.4, 0.1, 0.55, 0.1]})
    outputs["c"][0][1] = 0.1  # img:1: c is surer the parasite label is wrong than on img:2
    queue = review_queue(np.array(IDS), np.array(LABELS), outputs, scheme)
    assert queue["image_id"].tolist()[:3] == ["img:1", "img:2", "img:4"]
    assert queue["runs calling positive"].tolist()[:3] == [1, 1, 2]


def test_the_simulated_reviewer_answers_the_head_of_the_queue_from_the_truth(layout, records):
    truth = pd.DataFrame({"image_id": IDS, "truth": ["parasite", "parasite", "non-parasite", "non-parasite",
                                                     "non-parasite", "non-parasite"]})
    queue = queue_test_rows(records, layout)
    assert layout.test_queue.is_file() and queue["image_id"].iloc[0] == "img:2"
    assert simulated_review(queue, truth, 1, layout) == {"review_budget": 1, "annotations_found_wrong": 1}
    verified = read_verified("", layout)
    assert verified["image_id"].tolist() == ["img:2"] and verified["value"].tolist() == [0]
    assert verified["simulated"].tolist() == [True]
    simulated_review(queue, truth, 0, layout)  # a budget of 0 removes an earlier simulation
    assert read_verified("", layout).empty


def test_the_simulated_reviewer_is_refused_by_name_without_truth_or_beyond_the_test_rows(layout, records, tmp_path):
    queue = queue_test_rows(records, layout)
    truth = pd.DataFrame({"image_id": IDS, "truth": ["parasite"] * 6})
    with pytest.raises(ParameterError, match="'review_budget'.*needs truth_path"):
        simulated_review(queue, None, 3, layout)
    with pytest.raises(ParameterError, match="'review_budget'.*is 7, more than the 6 test rows"):
        simulated_review(queue, truth, 7, layout)
    values = {**notebook_defaults("06_compare"), "data_dir_base": str(tmp_path / "r"), "review_budget": 5}
    with pytest.raises(ParameterError, match="'review_budget'.*needs truth_path"):
        check_parameters("06_compare", values)


# ---------------------------------------------------------------- honest statistics

def test_the_step_down_correction_charges_for_independent_runs_not_for_copies():
    rng = np.random.default_rng(0)
    one = rng.normal(0.01, 0.005, 2000)  # a run about two standard errors above SB
    single = stepdown_adjusted(np.array([0.01]), one[None])[0]
    copies = stepdown_adjusted(np.full(10, 0.01), np.tile(one, (10, 1)))
    np.testing.assert_allclose(copies, single)  # ten runs that err alike are one test
    independent = np.vstack([one, rng.normal(0.0, 0.005, (9, 2000))])
    assert stepdown_adjusted(np.r_[0.01, np.zeros(9)], independent)[0] > 2 * single


def test_the_step_down_correction_keeps_false_claims_rare_when_no_run_beats_sb():
    rng = np.random.default_rng(1)
    any_claim = []
    for _ in range(200):  # ten runs no better than SB: observed differences are noise around 0
        observed = rng.normal(0, 0.005, 10)
        resampled = observed[:, None] + rng.normal(0, 0.005, (10, 500))
        any_claim.append((stepdown_adjusted(observed, resampled) <= 0.05).any())
    assert np.mean(any_claim) <= 0.08


def _table(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"status": "ok", "accuracy": list(values.values())}, index=pd.Index(list(values), name="run"))


def test_the_verdict_keeps_sb_when_no_strategy_is_significantly_above_it():
    rng = np.random.default_rng(0)
    sb = 0.95 + rng.normal(0, 0.01, 1000)
    samples = {"s_b": sb, **{f"s_{k}": sb + rng.normal(0.002, 0.01, 1000) for k in range(12)}}
    table = _table({name: float(s.mean()) for name, s in samples.items()})
    result = verdict(table, samples, "accuracy")
    assert result["best"] == "s_b" and result["significantly_above_sb"] == []
    assert result["text"].startswith("Verdict: no strategy beats SB on this data: none of 12 runs")
    # one run clearly above SB is picked, and the others stay within noise
    samples["s_0"] = sb + 0.02
    table = _table({name: float(s.mean()) for name, s in samples.items()})
    result = verdict(table, samples, "accuracy")
    assert result["best"] == "s_0" and result["significantly_above_sb"] == ["s_0"]
    assert result["tests"]["s_0"]["p_adjusted"] <= 0.05 and "Verdict: s_0 beats SB" in result["text"]


def test_the_oracle_is_never_tested_or_picked():
    samples = {"s_b": np.full(100, 0.9), "s_oracle": np.full(100, 0.99), "s_fix": np.full(100, 0.9)}
    result = verdict(_table({"s_b": 0.9, "s_oracle": 0.99, "s_fix": 0.9}), samples, "accuracy")
    assert result["best"] == "s_b" and "s_oracle" not in result["tests"]


# ---------------------------------------------------------------- groups kept whole

def _grouped_sources(tmp_path, with_column=True):
    rng = np.random.default_rng(0)
    pairs = []
    for name, n in (("patient", 240), ("neg", 120)):
        extra = {"slide": [f"{name}-{k}" for k in np.sort(rng.integers(0, 6, n))]} if with_column else {}
        labels = rng.integers(0, 2, n).astype(float) if name == "patient" else np.zeros(n)
        pairs.append(write_set(tmp_path / name, f"{name}_combined", rng.integers(0, 255, (n, 2, 5, 5)).astype(np.uint8),
                               labels, **extra))
    return pairs


def test_the_test_split_keeps_every_group_whole(tmp_path, scheme):
    sources = _grouped_sources(tmp_path)
    out = write_set(tmp_path / "c", "combined", np.zeros((1, 2, 5, 5), np.uint8), [0.0])
    ann = combine(sources, out, scheme, test_frac=0.2, seed=0, group_by="slide")
    test_groups, train_groups = set(ann.loc[ann["split"] == "test", "slide"]), set(ann.loc[ann["split"] != "test", "slide"])
    assert test_groups and not test_groups & train_groups
    assert 0.1 <= (ann["split"] == "test").mean() <= 0.3
    plain = combine(sources, out, scheme, test_frac=0.2, seed=0)
    assert set(plain.loc[plain["split"] == "test", "slide"]) & set(plain.loc[plain["split"] != "test", "slide"])


def test_a_missing_group_column_or_too_few_groups_is_explained(tmp_path, scheme):
    sources = _grouped_sources(tmp_path)
    bare = _grouped_sources(tmp_path / "bare", with_column=False)
    out = write_set(tmp_path / "c", "combined", np.zeros((1, 2, 5, 5), np.uint8), [0.0])
    with pytest.raises(InputError, match=r"neg_combined_ann.csv: no column 'slide' \(group_by\)"):
        combine([sources[0], bare[1]], out, scheme, test_frac=0.2, seed=0, group_by="slide")
    with pytest.raises(ParameterError, match="'group_by'.*6 group.*at least 10"):
        combine([sources[0]], out, scheme, test_frac=0.1, seed=0, group_by="slide")  # 6 slides cannot make a tenth


def test_out_of_fold_folds_keep_every_group_whole():
    rng = np.random.default_rng(1)
    groups = np.array([f"slide-{k}" for k in rng.integers(0, 12, 300)], dtype=object)
    targets = rng.integers(0, 2, 300)
    targets[:20] = -1  # not trained on: no fold
    fold = fold_assignment(targets, 3, seed=0, groups=groups)
    assert (fold[:20] == -1).all() and set(fold[20:]) == {0, 1, 2}
    for group in set(groups[20:]):
        assert len(set(fold[20:][groups[20:] == group])) == 1, group


def test_group_folds_off_keeps_only_the_test_split_grouped():
    grouped = {"group_by": "slide", "wrong_from": "out_of_fold"}
    for notebook, folds in (("03_baselines_SA_SB", lambda cfg: cfg.baseline_folds("s_b")),
                            ("05_relabel_and_classify", lambda cfg: cfg.later_round_folds)):
        values = {**notebook_defaults(notebook), **{k: v for k, v in grouped.items() if k in NOTEBOOK_PARAMETERS[notebook]}}
        assert folds(check_parameters(notebook, values)).group_by == "slide"
        assert folds(check_parameters(notebook, {**values, "group_folds": False})).group_by == ""


def test_fold_baselines_names_the_baselines_that_train_fold_models():
    values = {**notebook_defaults("03_baselines_SA_SB"), "wrong_from": "out_of_fold"}
    cfg = check_parameters("03_baselines_SA_SB", {**values, "fold_baselines": ["s_b"]})
    assert cfg.baseline_folds("s_a") is None and cfg.baseline_folds("s_b") is not None
    with pytest.raises(ParameterError, match="fold_baselines"):
        check_parameters("03_baselines_SA_SB", {**values, "fold_baselines": ["s_c"]})


def test_an_undefined_difference_is_never_a_claim():
    resampled = np.vstack([np.full(100, np.nan), np.full(100, 0.05)])
    adjusted = stepdown_adjusted(np.array([np.nan, 0.05]), resampled)
    assert adjusted[0] == 1.0 and adjusted[1] <= 0.05
