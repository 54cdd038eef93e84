"""Strategies that prune or fix the flagged wrong labels, soft targets, and rounds."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAINING, write_set
from notebook_runs import read_metrics

from helpers.core.errors import InputError, ParameterError
from helpers.core.labels import LabelScheme
from helpers.core.paths import PROJECT_ROOT
from helpers.curation import proposals
from helpers.curation.relabel import relabel_unsure
from helpers.curation.strategies import DEFAULT_STRATEGIES, STRATEGIES, classifier_inputs
from helpers.curation.wrong_labels import action_counts, action_precision, apply_policy, flagged_rows
from helpers.data.layout import Layout
from helpers.data.sets import open_image_set, read_annotations
from helpers.model.bundle import load_bundle
from helpers.model.inference import predict_probabilities
from helpers.model.training import fit
from helpers.run.parameter_files import load_parameters
from helpers.run.parameters import train_config
from helpers.run.runner import plan, run_pipeline


def _predictions(rows: list[tuple[str, float, str, bool, float]]) -> pd.DataFrame:
    """(image_id, annotation, split, is_label_issue, parasite out-of-fold) per row."""
    frame = pd.DataFrame(rows, columns=["image_id", "annotation", "split", "is_label_issue", "parasite out-of-fold"])
    frame["non-parasite out-of-fold"] = 1 - frame["parasite out-of-fold"]
    return frame


PREDICTIONS = _predictions([
    ("a", 1.0, "train", True, 0.05),   # flagged, out-of-fold surely non-parasite: fixed to 0
    ("b", 0.0, "val", True, 0.70),     # flagged, out-of-fold parasite at 0.70 only: pruned under fix_threshold 0.8
    ("c", 1.0, "train", False, 0.95),  # not flagged: kept
    ("d", 0.0, "test", True, 0.99),    # flagged but a test row: never touched
    ("e", 1.0, "train", True, 0.10),   # flagged: fixed
])


def _certain() -> pd.DataFrame:
    return PREDICTIONS[["image_id", "annotation", "split"]].copy()


def test_flag_by_neighbours_acts_on_the_neighbour_flags(scheme):
    by_neighbours = PREDICTIONS.assign(is_neighbour_issue=[False, True, True, True, False])
    flagged = flagged_rows(by_neighbours, scheme, flag_by="neighbours")
    assert flagged["image_id"].tolist() == ["b", "c"]  # d is a test row
    assert flagged_rows(by_neighbours, scheme)["image_id"].tolist() == ["a", "b", "e"]  # cleanlab's, as before
    with pytest.raises(InputError, match="'is_neighbour_issue'"):
        flagged_rows(PREDICTIONS, scheme, flag_by="neighbours")


def test_the_neighbour_vote_can_choose_the_class_a_flagged_image_is_fixed_to(scheme):
    """Without out-of-fold outputs (a later round without fold models) a flagged image's suggested class
    is the other one, as confident as the share of its neighbours that carry it."""
    by_neighbours = PREDICTIONS.drop(columns=["parasite out-of-fold", "non-parasite out-of-fold"]).assign(
        is_neighbour_issue=[True, True, False, True, True], neighbour_agreement=[0.1, 0.3, 0.9, 0.2, 0.45])
    flagged = flagged_rows(by_neighbours, scheme, flag_by="neighbours", suggest_from="neighbours")
    assert flagged["image_id"].tolist() == ["a", "b", "e"]  # d is a test row
    assert flagged["suggested"].tolist() == [0.0, 1.0, 0.0]
    assert flagged["confidence"].tolist() == pytest.approx([0.9, 0.7, 0.55])
    curated = apply_policy(_certain(), flagged, "fix", 0.6).set_index("image_id")
    assert curated["label_action"].to_dict() == {"a": "fixed", "b": "fixed", "c": "kept", "d": "kept", "e": "pruned"}
    with pytest.raises(InputError, match="'neighbour_agreement'"):
        flagged_rows(by_neighbours.drop(columns="neighbour_agreement"), scheme, flag_by="neighbours",
                     suggest_from="neighbours")


def test_prune_takes_every_flagged_training_row_out_and_never_a_test_row(scheme):
    curated = apply_policy(_certain(), flagged_rows(PREDICTIONS, scheme), "prune", 0.8).set_index("image_id")
    assert curated["label_action"].to_dict() == {"a": "pruned", "b": "pruned", "c": "kept", "d": "kept", "e": "pruned"}
    assert (curated.loc[["a", "b", "e"], "annotation"] < 0).all()  # rounds below 0: predicted, never trained on
    assert curated.loc["d", "annotation"] == 0.0 and curated.loc["c", "annotation"] == 1.0
    assert curated["original_annotation"].to_dict() == _certain().set_index("image_id")["annotation"].to_dict()
    assert curated["is_gt"].to_dict() == {"a": False, "b": False, "c": True, "d": True, "e": False}


def test_fix_relabels_the_confident_flags_and_prunes_the_rest(scheme):
    curated = apply_policy(_certain(), flagged_rows(PREDICTIONS, scheme), "fix", 0.8).set_index("image_id")
    assert curated["label_action"].to_dict() == {"a": "fixed", "b": "pruned", "c": "kept", "d": "kept", "e": "fixed"}
    assert curated.loc[["a", "e"], "annotation"].tolist() == [0.0, 0.0]
    assert curated.loc["b", "annotation"] < 0
    assert action_counts(curated) == {"kept": 2, "pruned": 1, "fixed": 2}
    lenient = apply_policy(_certain(), flagged_rows(PREDICTIONS, scheme), "fix", 0.6).set_index("image_id")
    assert lenient.loc["b", ["annotation", "label_action"]].tolist() == [1.0, "fixed"]
    kept = apply_policy(_certain(), flagged_rows(PREDICTIONS, scheme), "keep", 0.8)
    assert kept["annotation"].tolist() == _certain()["annotation"].tolist()


def test_precision_of_what_was_pruned_and_fixed_against_the_truth(scheme):
    curated = apply_policy(_certain(), flagged_rows(PREDICTIONS, scheme), "fix", 0.8)
    # a was truly non-parasite (a flip: fixed right), e truly parasite (fixed wrong), b truly parasite (pruned a flip)
    truth = pd.DataFrame({"image_id": list("abcde"),
                          "truth": ["non-parasite", "parasite", "parasite", "non-parasite", "parasite"]})
    assert action_precision(curated, truth, scheme) == {"prune precision": 1.0, "fix precision": 0.5}


def test_flags_without_out_of_fold_outputs_are_refused_naming_the_file(scheme):
    with pytest.raises(InputError, match="s_b/ann_with_predictions.csv.*wrong_from='out_of_fold'"):
        flagged_rows(PREDICTIONS.drop(columns="is_label_issue"), scheme, "s_b/ann_with_predictions.csv")


def test_the_strategy_table_pairs_an_unsure_policy_with_a_wrong_label_policy(tmp_path, scheme):
    assert {s.wrong_labels for s in STRATEGIES.values()} == {"keep", "prune", "fix"}
    assert all(STRATEGIES[name].wrong_labels == "keep" for name in DEFAULT_STRATEGIES)  # the default run is unchanged
    layout = Layout.from_params(str(tmp_path / "d"), str(tmp_path / "n"), str(tmp_path / "runs"), scheme)
    assert classifier_inputs(STRATEGIES["s_fix"], layout, 0.9)["certain"] == layout.curated_certain("s_fix")
    assert classifier_inputs(STRATEGIES["s_2thr"], layout, 0.9)["certain"] == layout.certain


def test_a_run_that_would_prune_without_out_of_fold_flags_is_refused_before_it_starts(tmp_path):
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), "data_dir_base": str(tmp_path / "runs")}
    with pytest.raises(ParameterError, match="wrong_from.*s_fix.*out_of_fold"):
        plan({**params, "wrong_from": "in_sample"}, strategies=["s_2thr", "s_fix"])
    plan({**params, "wrong_from": "out_of_fold"}, strategies=["s_2thr", "s_fix"])
    with pytest.raises(ParameterError, match="fold_baselines.*leaves out s_b"):
        plan({**params, "wrong_from": "out_of_fold", "fold_baselines": ["s_a"]}, strategies=["s_fix"])
    plan({**params, "wrong_from": "out_of_fold", "fold_baselines": ["s_b"]}, strategies=["s_1a", "s_fix"])


def test_later_rounds_without_fold_models_need_the_neighbour_flags(tmp_path):
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), "data_dir_base": str(tmp_path / "runs"),
              "wrong_from": "out_of_fold", "rounds": 2, "round_folds": False}
    with pytest.raises(ParameterError, match="round_folds.*flag_by='neighbours'.*'cleanlab'"):
        plan({**params, "flag_by": "cleanlab"}, strategies=["s_fix"])
    plan({**params, "flag_by": "neighbours"}, strategies=["s_fix"])


# ---------------------------------------------------------------- soft targets

def _soft_set(tmp_path, soft_target) -> "open_image_set":
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 2, 8, 8), dtype=np.uint8)
    pair = write_set(tmp_path, "soft", images, [1.0, 0.0] * 32, soft_target=soft_target)
    return open_image_set(pair, LabelScheme.from_dict({"neg": 0, "pos": 1, "unsure": 2}))


def test_rows_with_a_soft_target_learn_that_probability_not_their_hard_label(tmp_path):
    """Random images, half labelled positive: hard labels are memorised towards 0 / 1, a soft target
    of 0.7 on every row pulls every output to about 0.7."""
    cfg = train_config(arch="resnet10", width=8, epochs=30, batch_size=64, lr=0.01, val_frac=0.25, device="cpu",
                       keep_weights="last")
    scheme = LabelScheme.from_dict({"neg": 0, "pos": 1, "unsure": 2})
    soft = fit(_soft_set(tmp_path / "soft", [0.7] * 64), scheme, cfg)
    hard = fit(_soft_set(tmp_path / "hard", [np.nan] * 64), scheme, cfg)

    images = np.load(tmp_path / "soft" / "soft_images.npy")

    def positive_output(result) -> np.ndarray:
        return predict_probabilities(result.model, images[result.data.train_rows], cfg.torch_device)[:, 1]

    assert abs(positive_output(soft).mean() - 0.7) < 0.08
    assert positive_output(soft).std() < 0.1
    assert positive_output(hard).std() > positive_output(soft).std()


def test_a_soft_target_outside_0_1_is_refused_naming_the_file(tmp_path):
    scheme = LabelScheme.from_dict({"neg": 0, "pos": 1, "unsure": 2})
    with pytest.raises(InputError, match=r"soft_ann.csv.*soft_target must lie in \[0, 1\]"):
        fit(_soft_set(tmp_path, [1.5] + [np.nan] * 63), scheme, train_config(epochs=1, width=8, device="cpu"))


# ---------------------------------------------------------------- through the pipeline

@pytest.mark.slow
def test_fix_and_soft_strategies_through_the_pipeline_with_rounds(tiny_demo, tmp_path):
    base = tmp_path / "runs"
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), **TINY_TRAINING,
              "data_dir": str(tiny_demo["data_dir"]), "data_dir_n": str(tiny_demo["data_dir_n"]),
              "data_dir_base": str(base), "truth_path": str(tiny_demo["truth"]), "which": "s_b",
              "wrong_from": "out_of_fold", "folds": 2, "rounds": 2, "fix_threshold": 0.5, "cotrain_warmup": 1}
    results, _ = run_pipeline(params, strategies=["s_fix", "s_soft_fix", "s_fix_cons", "s_cotrain"], jobs=2)
    assert all(r.succeeded for r in results), [(r.step, r.status, r.error) for r in results]
    layout = Layout.from_params(params["data_dir"], params["data_dir_n"], str(base),
                                LabelScheme.from_dict(params.get("ann_dict", {"non-parasite": 0, "parasite": 1,
                                                                               "unsure": 2, "unlabeled": -1})))
    sb = read_annotations(layout.predictions("s_b"))
    flagged = sb[sb["is_label_issue"].astype(bool) & (sb["split"] != "test")]
    assert len(flagged) > 0  # the tiny demo has flips, and tiny models flag plenty
    for name in ("s_fix", "s_soft_fix"):
        metrics = read_metrics(base, f"05_relabel_and_classify_{name}")
        rounds = metrics["rounds"]
        assert rounds[0] == {"round": 1, "flagged by": "s_b", "flagged": len(flagged),
                             **{k: rounds[0][k] for k in ("kept", "pruned", "fixed")}}
        assert len(rounds) == 2 and rounds[0]["pruned"] + rounds[0]["fixed"] == len(flagged)
        curated = read_annotations(layout.curated_certain(name).ann).set_index("image_id")
        certain = read_annotations(layout.certain.ann).set_index("image_id")
        test = certain["split"] == "test"
        assert (curated.loc[test.index[test], "annotation"] == certain.loc[test, "annotation"]).all()
        final = read_annotations(layout.run_set(name, "cl").ann)
        assert (final["label_action"] == "pruned").sum() == (curated["label_action"] == "pruned").sum()
        assert (final.loc[final["label_action"] == "pruned", "annotation"] < 0).all()
    soft_final = read_annotations(layout.run_set("s_soft_fix", "cl").ann)
    unsure = soft_final["input"] == "relabeled unsure"
    assert soft_final.loc[unsure, "soft_target"].between(0, 1).all()
    table = {row["run"]: row for row in read_metrics(base, "06_compare")["table"]}
    assert table["s_fix"]["wrong labels pruned"] + table["s_fix"]["wrong labels fixed"] > 0
    assert "fix precision vs truth" in table["s_fix"] and "gain over SB vs truth CI low" in table["s_fix"]
    # issue 34: each 05 shows the sections that apply and links a gallery of what it changed, with the truth
    reports = base / "reports"
    fix_report = (reports / "05_relabel_and_classify_s_fix_nocode.html").read_text()
    assert "Wrong labels" in fix_report and "Relabel the unsures" not in fix_report  # s_fix leaves the unsures out
    soft_report = (reports / "05_relabel_and_classify_s_soft_fix_nocode.html").read_text()
    assert "Relabel the unsures" in soft_report and "How the split would change" not in soft_report  # no threshold
    fix_metrics = read_metrics(base, "05_relabel_and_classify_s_fix")
    gallery = Path(fix_metrics["gallery"])
    assert gallery == reports / "gallery_s_fix.html" and 'href="gallery_s_fix.html"' in fix_report
    cumulative = fix_metrics["rounds"][-1] if "stopped" not in fix_metrics["rounds"][-1] else fix_metrics["rounds"][-2]
    changed = fix_metrics["changed"]
    assert sum(changed.get(k, {}).get("images", 0) for k in ("pruned", "fixed")) == cumulative["pruned"] + cumulative["fixed"]
    assert all(0 <= kind["right (truth)"] <= 1 for kind in changed.values())
    page = gallery.read_text()
    assert page.count('<img src="data:image/png;base64,') == len(changed) and "true class" in page
    assert "relabeled" in read_metrics(base, "05_relabel_and_classify_s_soft_fix")["changed"]
    index = (reports / "index.html").read_text()
    assert all(f'href="gallery_{s}.html"' in index for s in ("s_fix", "s_soft_fix", "s_fix_cons"))
    # s_fix_cons: s_fix's set, and its final classifier also learns from the images left unlabeled
    history = load_bundle(layout.model_perf("s_fix_cons", "cl")).history
    assert "pseudo_labelled" in history and "pseudo_labelled" not in load_bundle(layout.model_perf("s_fix", "cl")).history
    # s_cotrain: its final classifier is a pair of networks that divided the labels after the warm-up, and 06
    # scores the pair's mean like any run
    cotrain = load_bundle(layout.model_perf("s_cotrain", "cl"))
    assert len(cotrain.predictors) == 2 and cotrain.history["labelled_share"].notna().tolist() == [False, True]
    assert table["s_cotrain"]["status"] == "ok" and table["s_cotrain"]["accuracy vs truth"] is not None


def test_soft_and_exclude_proposals_reach_the_relabeled_unsures(scheme):
    unsure = pd.DataFrame({"image_id": ["u1", "u2"], "annotation": [2.0, 2.0]})
    scores = np.array([0.3, 0.9])
    for proposal, annotations, soft in ((proposals.soft(scores), [0.0, 1.0], [0.3, 0.9]),
                                        (proposals.exclude(scores), [-0.8, -0.8], None)):
        diff = unsure.assign(**{"non-parasite output": 1 - scores, "parasite output": scores,
                                "proposed_annotation": proposal.proposed})
        if soft is not None:
            diff["soft_target"] = proposal.scores
        relabeled = relabel_unsure(unsure, diff, scheme, thresh=0.9)
        assert relabeled["annotation"].tolist() == annotations
        if soft is None:
            assert "soft_target" not in relabeled.columns
        else:
            assert relabeled["soft_target"].tolist() == soft


@pytest.mark.slow
def test_a_later_round_without_fold_models_flags_and_fixes_by_its_own_neighbour_vote(tiny_demo, tmp_path):
    base = tmp_path / "runs"
    params = {**load_parameters(PROJECT_ROOT / "parameters" / "smoke.yaml"), **TINY_TRAINING,
              "data_dir": str(tiny_demo["data_dir"]), "data_dir_n": str(tiny_demo["data_dir_n"]),
              "data_dir_base": str(base), "which": "s_b", "wrong_from": "out_of_fold", "folds": 2,
              "flag_by": "neighbours", "issue_neighbors": 5, "rounds": 2, "round_folds": False, "fix_threshold": 0.5}
    results, _ = run_pipeline(params, strategies=["s_fix"], jobs=1)
    assert all(r.succeeded for r in results), [(r.step, r.status, r.error) for r in results]
    layout = Layout.from_params(params["data_dir"], params["data_dir_n"], str(base),
                                LabelScheme.from_dict({"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1}))
    round2 = read_annotations(layout.predictions("s_fix", "round2"))
    assert {"neighbour_agreement", "is_neighbour_issue"} <= set(round2.columns)
    assert not any(c.endswith("out-of-fold") for c in round2.columns)  # no fold model was trained
    assert load_bundle(layout.model_perf("s_fix", "round2")).metrics["neighbour_flags"]["folds"] == 0
    rounds = read_metrics(base, "05_relabel_and_classify_s_fix")["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and rounds[1]["flagged by"] == "s_fix round 2"
    if "stopped" not in rounds[1]:  # round 2's flags applied: at fix_threshold 0.5 each takes the other class
        flagged = round2[round2["is_neighbour_issue"].astype(bool) & (round2["split"] != "test")]
        assert len(flagged) == rounds[1]["flagged"] > 0
        curated = read_annotations(layout.curated_certain("s_fix").ann).set_index("image_id")
        assert (curated.loc[flagged["image_id"], "annotation"].to_numpy() == 1 - flagged["annotation"].to_numpy()).all()
