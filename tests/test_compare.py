"""The comparison table and its verdict, on six test rows whose every number is worked out by hand."""
import numpy as np
import pandas as pd
import pytest

from helpers.curation.compare import RunRecord, comparison_table
from helpers.curation.verdict_rule import verdict
from helpers.data.layout import Layout

IDS = [f"img:{i}" for i in range(6)]
LABELS = [1, 1, 1, 0, 0, 0]  # annotated: three parasites, three non-parasites


@pytest.fixture
def layout(tmp_path, scheme):
    layout = Layout(tmp_path / "d", tmp_path / "n", tmp_path / "runs", scheme)
    layout.data_dir.mkdir()
    ann = pd.DataFrame({"annotation": [*LABELS, 1.0, 2.0], "image_id": [*IDS, "train:0", "unsure:0"],
                        "split": ["test"] * 6 + ["train", "train"]})
    ann.rename_axis("index").to_csv(layout.combined.ann)
    return layout


def record(name: str, parasite: list[float]) -> RunRecord:
    """A run whose predictions list the test rows in reverse order (the table must align by image_id)."""
    preds = pd.DataFrame({"image_id": IDS, "parasite output": parasite,
                          "non-parasite output": 1 - np.asarray(parasite)}).iloc[::-1]
    return RunRecord(name, "ok", predictions=preds)


@pytest.fixture
def records():
    return {
        # predicted parasite (> 0.5): rows 0, 1 -> 5/6 right; ranking: 0.25 (a parasite) below 0.3: 8 of 9 pairs
        "s_a": record("s_a", [0.9, 0.8, 0.25, 0.3, 0.2, 0.1]),
        # predicted parasite: rows 0-3 -> 5/6 right; ranking: 0.9 (a non-parasite) above all parasites: 6 of 9
        "s_b": record("s_b", [0.6, 0.7, 0.8, 0.9, 0.2, 0.1]),
        # all right, perfect ranking
        "s_1a": record("s_1a", [0.9, 0.9, 0.6, 0.45, 0.1, 0.1]),
        "s_2b": RunRecord("s_2b", "not applicable", "the differentiator saw one class only"),
    }


def test_comparison_table_by_hand(layout, records):
    table, result = comparison_table(records, layout, truth=None, primary="roc_auc", n_bootstrap=0)
    assert list(table.index) == ["s_a", "s_b", "s_1a", "s_2b"]
    assert (table.loc[["s_a", "s_b", "s_1a"], "test rows"] == 6).all()  # the train and unsure rows are not scored
    assert table.loc["s_a", "accuracy"] == pytest.approx(5 / 6)
    assert table.loc["s_a", "parasite precision"] == pytest.approx(1.0)
    assert table.loc["s_a", "parasite recall"] == pytest.approx(2 / 3)
    assert table.loc["s_a", "parasite F1"] == pytest.approx(0.8)
    assert table.loc["s_a", "ROC AUC"] == pytest.approx(8 / 9)
    assert table.loc["s_b", "accuracy"] == pytest.approx(5 / 6)
    assert table.loc["s_b", "parasite precision"] == pytest.approx(3 / 4)
    assert table.loc["s_b", "ROC AUC"] == pytest.approx(6 / 9)
    assert table.loc["s_1a", "accuracy"] == 1.0 and table.loc["s_1a", "ROC AUC"] == 1.0
    assert table.loc["s_2b", "status"] == "not applicable" and "one class" in table.loc["s_2b", "reason"]

    assert result["best"] == "s_1a" and result["best_value"] == 1.0
    assert result["runner-up"]["run"] == "s_a"
    assert result["runner-up"]["difference"] == pytest.approx(1 - 8 / 9)
    assert result["best_baseline"]["run"] == "s_a"  # the better of SA (8/9) and SB (6/9)
    assert result["text"] == ("Best by test ROC AUC: s_1a (1.000). +0.111 over the runner-up s_a. "
                              "+0.111 over the best baseline s_a.")


def test_comparison_against_the_hidden_truth(layout, records):
    truth = pd.DataFrame({"image_id": IDS + ["u:0", "u:1"],
                          "truth": ["parasite"] * 4 + ["non-parasite"] * 2 + ["parasite", "parasite"]})  # row 3 flipped
    records["s_1a"].relabeled = pd.DataFrame({"image_id": ["u:0", "u:1"], "annotation": [1.0, 0.0]})
    table, _ = comparison_table(records, layout, truth, primary="accuracy", n_bootstrap=0)
    # s_1a predicts rows 0-2 parasite; the truth says 0-3: 5 of 6
    assert table.loc["s_1a", "accuracy vs truth"] == pytest.approx(5 / 6)
    assert table.loc["s_b", "accuracy vs truth"] == pytest.approx(1.0)  # rows 0-3: exactly the truth
    assert table.loc["s_1a", "unsure relabel accuracy vs truth"] == pytest.approx(0.5)
    assert table.loc["s_1a", "unsures labelled (share)"] == 1.0
    assert table.loc["s_1a", "unsures relabeled positive"] == 1


def test_bootstrap_intervals_bracket_the_values(layout, records):
    table, result = comparison_table(records, layout, truth=None, primary="roc_auc", n_bootstrap=200, seed=0)
    ok = table[table["status"] == "ok"]
    assert ((ok["roc_auc CI low"] <= ok["ROC AUC"]) & (ok["ROC AUC"] <= ok["roc_auc CI high"])).all()
    assert ((ok["accuracy CI low"] <= ok["accuracy"]) & (ok["accuracy"] <= ok["accuracy CI high"])).all()
    lo, hi = result["runner-up"]["ci"]
    assert lo <= result["runner-up"]["difference"] <= hi
    assert "paired bootstrap 95% CI" in result["text"]


def test_verdict_says_when_a_difference_is_not_significant():
    table = pd.DataFrame({"status": ["ok", "ok", "ok"], "ROC AUC": [0.90, 0.93, 0.80]},
                         index=pd.Index(["s_a", "s_1a", "s_b"], name="run"))
    clear = {"s_1a": np.full(100, 0.93), "s_a": np.full(100, 0.90), "s_b": np.full(100, 0.80)}
    result = verdict(table, clear, "roc_auc")
    assert result["best"] == "s_1a" and result["runner-up"]["ci"] == pytest.approx([0.03, 0.03])
    assert "not significant" not in result["text"]
    noisy = {**clear, "s_a": np.linspace(0.85, 1.0, 100)}
    assert "+0.030 over the runner-up s_a (paired bootstrap 95% CI" in verdict(table, noisy, "roc_auc")["text"]
    assert "not significant" in verdict(table, noisy, "roc_auc")["text"]


def test_verdict_without_any_run_names_no_winner():
    table = pd.DataFrame({"status": ["missing", "not applicable"], "ROC AUC": [np.nan, np.nan]}, index=["s_a", "s_1a"])
    assert verdict(table, {}, "roc_auc") == {"best": None, "text": "No run produced predictions to compare."}


def test_comparison_chart_draws_baselines_blue_and_every_strategy_orange():
    from matplotlib.colors import to_hex

    from helpers.plots import comparison_chart

    names = ["s_a", "s_b", "s_1a", "s_ceal", "s_prop", "s_2thr"]
    table = pd.DataFrame({"status": "ok", "ROC AUC": [0.9, 0.91, 0.92, 0.93, 0.94, 0.95]}, index=names)
    bars = comparison_chart(table, "ROC AUC", "roc_auc").axes[0].patches
    colours = {name: to_hex(bar.get_facecolor()) for name, bar in zip(names, bars)}
    blue, orange = colours["s_a"], colours["s_1a"]
    assert blue != orange and colours["s_b"] == blue
    assert all(colours[n] == orange for n in ("s_ceal", "s_prop", "s_2thr"))


def test_recall_at_a_false_positive_rate_by_hand():
    from helpers.metrics import recall_at_fpr

    is_pos = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.85, *np.linspace(0.0, 0.25, 15)])
    # no false positive allowed: only the 0.9 parasite is above the best negative (0.85)
    assert recall_at_fpr(is_pos, scores, 0.0) == {"recall": 0.25, "fpr": 0.0, "threshold": 0.9}
    one_in_16 = recall_at_fpr(is_pos, scores, 1 / 16)  # the 0.85 negative may pass: 0.9, 0.8 and 0.3 are found
    assert (one_in_16["recall"], one_in_16["fpr"]) == (0.75, 1 / 16)
    assert np.isnan(recall_at_fpr(np.zeros(5, bool), np.ones(5), 0.01)["recall"])


def test_comparison_reports_recall_at_max_fpr(layout, records):
    table, _ = comparison_table(records, layout, truth=None, primary="roc_auc", n_bootstrap=0, max_fpr=0.5)
    column = "parasite recall at FPR <= 0.5"
    ok = table[table["status"] == "ok"]
    assert ((ok[column] >= 0) & (ok[column] <= 1)).all()
    assert not [c for c in table.columns if "µl" in c]  # a crop is not a red cell: see test_red_cells


def test_the_oracle_is_a_reference_row_and_runs_report_the_gap_they_close(layout, records):
    # truth: rows 0-3 parasites (row 3 was annotated non-parasite: a flip)
    truth = pd.DataFrame({"image_id": IDS, "truth": ["parasite"] * 4 + ["non-parasite"] * 2})
    records["s_oracle"] = record("s_oracle", [0.9, 0.9, 0.9, 0.9, 0.1, 0.1])  # right on every true class
    table, result = comparison_table(records, layout, truth, primary="accuracy", n_bootstrap=0)
    # vs truth: s_b predicts rows 0-3 parasite -> 6/6; s_a rows 0-1 -> 4/6; s_1a rows 0-2 -> 5/6; oracle 6/6
    assert table.loc["s_oracle", "accuracy vs truth"] == 1.0 and table.loc["s_b", "accuracy vs truth"] == 1.0
    assert table["SB-to-oracle gap closed"].isna().all()  # SB already at the oracle: no gap to close
    records["s_b"] = record("s_b", [0.6, 0.7, 0.8, 0.2, 0.2, 0.1])  # now 5/6 vs truth: a gap of 1/6
    table, result = comparison_table(records, layout, truth, primary="accuracy", n_bootstrap=0)
    gap = table["SB-to-oracle gap closed"]
    assert gap["s_b"] == 0 and gap["s_oracle"] == 1 and gap["s_a"] == pytest.approx(-1.0)  # 4/6: a gap below SB
    assert result["best"] != "s_oracle" and "s_oracle" not in result["text"]
    # even when it scores best, the oracle is never the pick nor the runner-up
    best_by_far = pd.DataFrame({"status": "ok", "accuracy": [0.8, 0.9, 0.99]}, index=["s_a", "s_b", "s_oracle"])
    picked = verdict(best_by_far, {}, "accuracy")
    assert (picked["best"], picked["runner-up"]["run"]) == ("s_b", "s_a")


def test_oracle_annotations_are_the_truth_outside_the_test_rows(layout, scheme):
    from helpers.curation.oracle import oracle_pair

    truth = pd.DataFrame({"image_id": [*IDS, "train:0", "unsure:0"],
                          "truth": ["non-parasite"] * 6 + ["non-parasite", "parasite"]})
    ann = pd.read_csv(oracle_pair(layout, truth).ann)
    assert ann["annotation"].tolist() == [*map(float, LABELS), 0.0, 1.0]  # test rows as annotated; the rest true
    assert oracle_pair(layout, truth).ann.parent == layout.run_dir("s_oracle")


def test_comparison_reports_calibration_of_each_run(layout, records):
    truth = pd.DataFrame({"image_id": IDS, "truth": ["parasite"] * 3 + ["non-parasite"] * 3})
    table, _ = comparison_table(records, layout, truth, primary="accuracy", n_bootstrap=0)
    # s_1a: outputs 0.9, 0.9, 0.6 for parasites, 0.45, 0.1, 0.1 for the rest; all right, so the ECE is
    # the mean gap between confidence and 1: (0.1 + 0.1 + 0.4 + 0.45 + 0.1 + 0.1) / 6 by bins
    expected = (2 * 0.1 + 0.4 + 0.45 + 2 * 0.1) / 6
    assert table.loc["s_1a", "ECE"] == pytest.approx(expected) and table.loc["s_1a", "ECE vs truth"] == pytest.approx(expected)


def test_the_table_is_shown_in_three_narrow_views_that_keep_every_column(layout, records):
    from helpers.curation.compare import table_views

    truth = pd.DataFrame({"image_id": IDS, "truth": ["parasite"] * 3 + ["non-parasite"] * 3})
    table, _ = comparison_table(records, layout, truth, primary="roc_auc", n_bootstrap=50)
    views = table_views(table)
    assert list(views) == ["Test metrics against the annotations", "Operating points", "Against the hidden truth"]
    shown = [c for view in views.values() for c in view.columns if c != "status"]
    assert len(shown) == len(set(shown)) == len(table.columns) - 1  # every column once
    assert all("truth" in c or "unsure" in c or "gap" in c for c in views["Against the hidden truth"].columns[1:])
    assert "threshold: precision target" in views["Operating points"].columns
    widest = max(len(line) for v in views.values() for line in v.round(3).to_string().splitlines())
    assert widest < 0.6 * max(len(line) for line in table.round(3).to_string().splitlines())


def test_runs_that_curate_labels_report_what_they_pruned_and_fixed_and_their_gain_over_sb(layout, records):
    truth = pd.DataFrame({"image_id": IDS + ["t:0", "t:1", "t:2"],
                          "truth": ["parasite"] * 4 + ["non-parasite"] * 2 + ["parasite", "non-parasite", "parasite"]})
    # t:0 was a flip and got fixed right; t:1 was no flip but was pruned; t:2 a flip fixed to the wrong class
    records["s_1a"].curated = pd.DataFrame({"image_id": ["t:0", "t:1", "t:2"], "annotation": [1.0, -1.0, 0.0],
                                            "original_annotation": [0.0, 0.0, 1.0],
                                            "label_action": ["fixed", "pruned", "fixed"]})
    table, _ = comparison_table(records, layout, truth, primary="accuracy", n_bootstrap=200)
    row = table.loc["s_1a"]
    assert (row["wrong labels pruned"], row["wrong labels fixed"]) == (1, 2)
    assert row["prune precision vs truth"] == 0.0 and row["fix precision vs truth"] == 0.5
    assert np.isnan(table.loc["s_b", "gain over SB vs truth CI low"])  # SB is the reference
    # vs truth s_b is right on all 6, s_1a on 5: the paired gain is -1/6 on every resample that draws row 3
    lo, hi = table.loc["s_1a", ["gain over SB vs truth CI low", "gain over SB vs truth CI high"]]
    assert -1 <= lo <= -1 / 6 < hi <= 0


def test_the_verdict_reads_in_one_sentence_what_to_use_by_how_much_and_on_what():
    from helpers.curation.verdict_rule import one_sentence

    use = {"best": "s_prune", "primary_metric": "accuracy", "test_rows": 1136, "verified_rows": 110,
           "gain_over_sb": {"run": "s_prune", "difference": 0.009, "ci": [0.004, 0.015]}}
    assert one_sentence(use) == ("Use s_prune: +0.9 points of test accuracy over SB (95% CI +0.4 to +1.5), scored on "
                                 "1,136 test rows (110 of them verified labels).")
    keep = {**use, "best": "s_b", "gain_over_sb": {"run": "s_fix", "difference": 0.003, "ci": [-0.002, 0.008]}}
    assert one_sentence(keep).startswith("Keep SB: no strategy is significantly better on test accuracy; the "
                                         "closest, s_fix, is +0.3 points of test accuracy over SB (95% CI -0.2 to +0.8)")


def test_the_comparison_gives_the_sentence_with_the_picks_paired_interval(layout, records):
    _, result = comparison_table(records, layout, truth=None, primary="accuracy", n_bootstrap=200)
    gain = result["gain_over_sb"]
    assert gain["ci"][0] <= gain["difference"] <= gain["ci"][1]
    assert result["sentence"].startswith(("Use ", "Keep SB")) and "scored on 6 test rows (0 of them verified" in result["sentence"]
