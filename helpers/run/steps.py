"""The steps the notebooks call: 03's baselines, 04's differentiator (or proposals) and 05's
relabeling and final classifier. Each returns an Outcome; one that did not apply is passed on by
every later step, so a strategy that cannot apply says why in every cell and the run goes on."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from .. import plots
from ..core.atomic import OutputSet, write_json
from ..core.columns import INPUT, OUT_OF_FOLD, PROPOSED, output_column
from ..core.errors import InputError, NotTrainable
from ..core.files import read_json_status
from ..core.labels import LabelScheme
from ..curation.oracle import ORACLE, oracle_pair
from ..curation.proposals import propose
from ..curation.relabel import label_names, relabel_sweep, relabel_unsure
from ..curation.right_wrong import right_wrong_counts, split_right_wrong
from ..curation.strategies import Strategy, classifier_inputs, differentiator_inputs, get_strategy
from ..curation.training_run import (
    OperatingTargets,
    TrainedRun,
    TrainRequest,
    baseline_inputs,
    compare_runs,
    headline,
    label_issue_summary,
    train_and_save,
)
from ..curation.wrong_labels import action_counts, apply_policy, flagged_rows
from ..data.combine_split import combine
from ..data.describe import class_counts, describe_sets
from ..data.layout import CLASSIFIER, Layout
from ..data.sets import Pair, read_annotations
from ..data.truth import read_truth
from ..metrics import own_class_scores, test_threshold_table
from .config import Config
from .outcome import Outcome

# ---------------------------------------------------------------- every step

def strategy(cfg: Config) -> Strategy:
    """04 / 05: the strategy this run is."""
    return get_strategy(cfg.strategy)


def write_metrics(metrics: dict[str, Any], cfg: Config, chosen: Strategy | None = None) -> None:
    """A step's metrics.json (what the runner, the index and 06 read)."""
    write_json(metrics, cfg.layout.metrics(cfg.notebook, chosen.name if chosen else ""))


# ---------------------------------------------------------------- 03: baselines

def train(pair: Pair, cfg: Config, request: TrainRequest, upstream: Outcome | None = None) -> Outcome:
    """Train on `pair` as `request` asks; not applicable when the set cannot train a classifier or
    `upstream` did not apply, and then the run's stale outputs are removed."""
    if upstream is None or upstream.applies:
        try:
            trained = train_and_save(pair, cfg.scheme, request)
            return Outcome(Outcome.TRAINED, run=trained, figures=dict(trained.figures))
        except NotTrainable as exc:
            upstream = Outcome.not_applicable(str(exc))
    remove_run_outputs(request)
    return upstream


def remove_run_outputs(request: TrainRequest) -> None:
    """A run that did not apply this time leaves no stale predictions or bundle behind."""
    for stale in (request.predictions_path, request.bundle_path):
        stale.unlink(missing_ok=True)


def baseline_sets(cfg: Config) -> pd.DataFrame:
    """The baselines' input sets (SA: the combined set, SB: the certain images), validated, per class."""
    return describe_sets(baseline_inputs(cfg.layout, cfg.which), cfg.scheme)


def baselines(cfg: Config) -> dict[str, Outcome]:
    """03: the baselines `which` asks for (SA, SB), each with out-of-fold outputs when `wrong_from`
    asks for them. A baseline that cannot train stops 03 with the reason: every strategy needs both."""
    return {name: baseline(name, pair, cfg) for name, pair in baseline_inputs(cfg.layout, cfg.which).items()}


def baseline(name: str, pair: Pair, cfg: Config) -> Outcome:
    """One baseline run, with the figures 03 shows of it."""
    run = train_and_save(pair, cfg.scheme, cfg.train_request(name, out_of_fold=cfg.baseline_folds(name)))
    outcome = Outcome(Outcome.TRAINED, run=run, figures=dict(run.figures))
    scheme, k = cfg.scheme, cfg.n_examples
    classes = pd.Series(scheme.class_names(run.predictions["annotation"]), index=run.predictions.index)
    own = own_class_scores(run.predictions, run.fit.spec.class_names, run.fit.spec.class_values)
    outcome.figures["scores"] = plots.score_histograms(run.predictions, output_column(scheme.positive), classes,
                                                       title=f"{name}: {scheme.positive} output by annotated class")
    outcome.figures["worst_mistakes"] = plots.lowest_scores_grid(run.image_set.images, run.predictions, own, k,
                                                                 "Most confident mistakes")
    outcome.figures["label_issues"] = (
        plots.lowest_scores_grid(run.image_set.images, run.predictions,
                                 run.predictions["label_quality"].to_numpy(dtype=float), k,
                                 "Most likely label issues (cleanlab, lowest label quality)")
        if run.score_source == OUT_OF_FOLD else
        plots.message("No label_quality: run 03 with wrong_from='out_of_fold' for cleanlab's ranking."))
    return outcome


def oracle(cfg: Config) -> Outcome:
    """03: the clean-label oracle (the recipe on every non-test image's true class), when
    `truth_path` names the data's hidden truth; not applicable otherwise."""
    request = cfg.train_request(ORACLE, title="oracle (true labels)")
    truth = read_truth(cfg.truth_path, cfg.layout)
    if truth is None:
        remove_run_outputs(request)
        return Outcome.not_applicable("no truth_path: the oracle trains on the true labels (demo data)")
    return train(oracle_pair(cfg.layout, truth), cfg, request)


def right_wrong_sets(cfg: Config, runs: Mapping[str, TrainedRun]) -> dict[str, pd.DataFrame]:
    """03: write each baseline's `<class>_{wrong,right}` sets, judged by its out-of-sample outputs when
    it has them (out-of-fold), else its own; returns the counts per class of each."""
    counts = {}
    for name, run in runs.items():
        split_right_wrong(run.image_set, run.predictions, cfg.scheme,
                          lambda class_name, which: cfg.layout.right_wrong(name, class_name, which),
                          score_source=run.score_source)
        counts[name] = right_wrong_counts(run.predictions, cfg.scheme, run.score_source)
    return counts


def threshold_tables(runs: Mapping[str, TrainedRun], cfg: Config) -> dict[str, pd.DataFrame]:
    """Per baseline: the threshold sweep of the positive output on the certain test rows."""
    return {name: test_threshold_table(run.predictions, cfg.scheme) for name, run in runs.items()}


def compare_baselines(runs: Mapping[str, TrainedRun], cfg: Config) -> pd.DataFrame:
    """SA and SB side by side on the shared test rows."""
    return compare_runs(runs, cfg.scheme)


def label_issues(runs: Mapping[str, TrainedRun], cfg: Config) -> pd.DataFrame:
    """Per baseline: images called wrong in-sample and out-of-fold, cleanlab's issues, what the folds cost."""
    return label_issue_summary(runs, cfg.scheme)


def baselines_metrics(cfg: Config, runs: Mapping[str, TrainedRun], right_wrong: Mapping[str, pd.DataFrame],
                      oracle_run: Outcome) -> dict[str, Any]:
    """What 03 writes to its metrics.json; `right_wrong` the counts right_wrong_sets returned."""
    return {"step": "03_baselines_SA_SB", "status": "ok", "wrong_from": cfg.wrong_from,
            "runs": {name: {**headline(run), "right_wrong": right_wrong[name].to_dict(orient="index")}
                     for name, run in runs.items()},
            "oracle": (headline(oracle_run.run) if oracle_run.applies
                       else {"status": oracle_run.status, "reason": oracle_run.reason})}


# ---------------------------------------------------------------- 04: differentiator or proposals

def build_set(inputs: dict[str, Pair], out: Pair, scheme: LabelScheme) -> Outcome:
    """Combine the inputs (empty ones allowed) into `out`, tagging each row's `input` (its input set)."""
    table = combine(list(inputs.values()), out, scheme, inputs=list(inputs), allow_empty=True)
    return Outcome(Outcome.BUILT, table=table)


def differentiator_sets(strategy: Strategy, cfg: Config) -> pd.DataFrame:
    """The strategy's inputs (the origin's `combine_dict_diff`), validated, with rows per class."""
    return describe_sets(differentiator_inputs(strategy, cfg.layout), cfg.scheme, allow_empty=True)


def differentiator_set(strategy: Strategy, cfg: Config) -> Outcome:
    """Build `s_XY/combined_{images,ann}_diff` for a differentiator; nothing for a proposal strategy."""
    if not strategy.trains_differentiator:
        return Outcome(Outcome.BUILT, "none: this strategy trains no differentiator")
    return build_set(differentiator_inputs(strategy, cfg.layout), cfg.layout.run_set(strategy.name, "diff"), cfg.scheme)


def differentiator(strategy: Strategy, cfg: Config) -> Outcome:
    """Train the strategy's differentiator, or (proposal strategies) label the unsures from SB.

    Either way `s_XY/ann_with_predictions_diff.csv` holds a parasite output per unsure for 05.
    """
    layout, name, scheme = cfg.layout, strategy.name, cfg.scheme
    if not strategy.trains_differentiator:
        return proposals(strategy, cfg)
    outcome = train(layout.run_set(name, "diff"), cfg, cfg.train_request(name, "diff", title=f"{name} differentiator"))
    if outcome.run is not None:
        predictions = outcome.run.predictions
        group = predictions[INPUT] if INPUT in predictions else pd.Series("all", index=predictions.index)
        outcome.figures["scores"] = plots.score_histograms(
            predictions, output_column(scheme.positive), group, title=f"{name}: {scheme.positive} output by input")
    return outcome


def proposals(strategy: Strategy, cfg: Config) -> Outcome:
    """A proposal strategy's labels for the unsures, from SB, written as its `_diff` predictions."""
    layout, name, scheme = cfg.layout, strategy.name, cfg.scheme
    predictions_path = layout.predictions(name, "diff")
    predictions, proposal = propose(strategy.method, layout, delta=cfg.delta, n_neighbors=cfg.n_neighbors,
                                    targets=OperatingTargets(cfg.precision_target, cfg.recall_target))
    with OutputSet(inputs=[layout.class_set(scheme.unsure).ann]) as out:
        out.csv(predictions, predictions_path)
    layout.model_perf(name, "diff").unlink(missing_ok=True)  # a stale differentiator of an earlier definition
    group = "proposed " + label_names(predictions[PROPOSED], scheme)
    scores = plots.score_histograms(predictions, output_column(scheme.positive), group,
                                    title=f"{name}: {scheme.positive} output by input")
    return Outcome(Outcome.PROPOSED, f"No differentiator trained: the {strategy.method} strategy proposes labels "
                                  "from SB's predictions.", table=predictions,
                   details={"method": strategy.method, "predictions": str(predictions_path),
                            "proposal": proposal.details},
                   figures={"scores": scores})


def differentiator_metrics(strategy: Strategy, cfg: Config, diff_set: Outcome, outcome: Outcome) -> dict[str, Any]:
    """What 04 writes to its metrics.json."""
    return outcome.metrics("04_differentiator", strategy=strategy.name, description=strategy.description,
                           inputs=input_counts(diff_set))


# ---------------------------------------------------------------- 05: wrong labels, relabel, final set, final classifier

def curate_wrong_labels(strategy: Strategy, cfg: Config) -> Outcome:
    """Prune or fix the certain images the baseline's out-of-fold evidence flags (`flag_by`; the strategy's
    `wrong_labels`) into `s_XY/<certain>_curated.csv`. With `rounds` > 1: out-of-fold on the curated
    labels -> flag -> fix again, stopping early when the issue list stops shrinking. Keep: nothing to do."""
    layout, name, policy = cfg.layout, strategy.name, strategy.wrong_labels
    curated_pair = layout.curated_certain(name)
    for pattern in ("ann_with_predictions_round*.csv", "model_perf_round*.zip"):  # an earlier run's rounds
        for stale in layout.run_dir(name).glob(pattern):
            stale.unlink()
    if policy == "keep":
        curated_pair.ann.unlink(missing_ok=True)
        return Outcome(Outcome.BUILT, "keep: the certain images train on the labels they were given",
                       details={"wrong_labels": policy})
    source = layout.predictions(strategy.baseline)
    if not source.is_file():
        raise InputError(source, "not found: run 03 first")
    flagged = flagged_rows(read_annotations(source), cfg.scheme, str(source), flag_by=cfg.flag_by)  # raises before any work
    curated = apply_policy(read_annotations(layout.certain.ann, scheme=cfg.scheme), flagged, policy, cfg.fix_threshold)
    rounds = [{"round": 1, "flagged by": strategy.baseline, "flagged": len(flagged), **action_counts(curated)}]
    _write_curated(curated, curated_pair, [source, layout.certain.ann])
    for r in range(2, cfg.rounds + 1):
        trained = train_and_save(curated_pair, cfg.scheme, cfg.train_request(
            name, f"round{r}", title=f"{name} round {r}" + (" (out-of-fold)" if cfg.round_folds else ""),
            out_of_fold=cfg.later_round_folds))
        flagged = flagged_rows(trained.predictions, cfg.scheme, str(trained.predictions_path), flag_by=cfg.flag_by,
                               suggest_from=OUT_OF_FOLD if cfg.round_folds else "neighbours")
        if len(flagged) >= rounds[-1]["flagged"]:
            rounds.append({"round": r, "flagged by": f"{name} round {r}", "flagged": len(flagged),
                           "stopped": "the issue list stopped shrinking; this round's flags are not applied"})
            break
        curated = apply_policy(curated, flagged, policy, cfg.fix_threshold)
        rounds.append({"round": r, "flagged by": f"{name} round {r}", "flagged": len(flagged), **action_counts(curated)})
        _write_curated(curated, curated_pair, [trained.predictions_path])
    return Outcome(Outcome.BUILT, table=curated,
                   details={"wrong_labels": policy, "rounds": rounds, "file": str(curated_pair.ann)})


def _write_curated(curated: pd.DataFrame, out: Pair, inputs: list) -> None:
    with OutputSet(inputs=inputs) as files:
        files.csv(curated, out.ann)


def round_counts(curated: Outcome) -> pd.DataFrame:
    """Per round of wrong-label curation: how many certain images were flagged, and (cumulative) kept, pruned, fixed."""
    if "rounds" not in curated.details:
        return pd.DataFrame({"wrong labels": [curated.reason]})
    return pd.DataFrame(curated.details["rounds"]).set_index("round")


def relabel(strategy: Strategy, cfg: Config) -> Outcome:
    """Relabel the unsures from the strategy's differentiator (at `relabel_thresh`) and write
    unsure_relabeled_thresh_<t>.csv."""
    layout, thresh = cfg.layout, cfg.relabel_thresh
    status = read_json_status(layout.metrics("04_differentiator", strategy.name))
    if status["status"] != "ok":
        return Outcome.not_applicable(f"differentiator of {strategy.name} is {status['status']}: "
                                      f"{status.get('reason', '')}")
    predictions_path = layout.predictions(strategy.name, "diff")
    unsure_ann = layout.class_set(layout.scheme.unsure).ann
    relabeled = relabel_unsure(read_annotations(unsure_ann, scheme=layout.scheme), read_annotations(predictions_path),
                               layout.scheme, thresh, str(predictions_path))
    written = layout.relabeled(strategy.name, thresh)
    with OutputSet(inputs=[predictions_path, unsure_ann]) as out:
        out.csv(relabeled, written)
    sweep = relabel_sweep(relabeled["relabel_score"].to_numpy())
    figure = plots.class_counts_bar(sweep[["to positive", "to negative"]],
                                    f"{strategy.name}: unsures relabeled per threshold (used: {thresh:g})")
    return Outcome(Outcome.BUILT, table=relabeled, details={"file": str(written)}, figures={"relabel_sweep": figure})


def final_set(strategy: Strategy, cfg: Config, relabeled: Outcome) -> Outcome:
    """Build `s_XY/combined_{images,ann}_cl`: the certain images plus the relabeled unsures.

    With sample_weights="label_quality" each row also gets the baseline's `label_quality`
    (confident learning, 03 with wrong_from=out_of_fold) for the loss to weight by.
    """
    layout = cfg.layout

    def build() -> Outcome:
        quality = baseline_label_quality(strategy, layout) if cfg.sample_weights == "label_quality" else None
        out = layout.run_set(strategy.name, CLASSIFIER)
        built = build_set(classifier_inputs(strategy, layout, cfg.relabel_thresh), out, layout.scheme)
        if quality is not None:
            ann = built.table.drop(columns="label_quality", errors="ignore").merge(quality, on="image_id", how="left")
            ann.index.name = "index"
            with OutputSet() as files:
                files.csv(ann, out.ann)
            built.table = ann
        return built

    return relabeled.then(build)


def final_classifier(strategy: Strategy, cfg: Config, final: Outcome) -> Outcome:
    """05: train the final classifier on the final set (not applicable when the set was not built)."""
    name = strategy.name
    request = cfg.train_request(name, CLASSIFIER, title=f"{name} classifier", unlabeled=strategy.unlabeled)
    return train(cfg.layout.run_set(name, CLASSIFIER), cfg, request, upstream=final)


def classifier_metrics(strategy: Strategy, cfg: Config, outcome: Outcome, relabeled: Outcome,
                       curated: Outcome, gallery: dict[str, Any] | None = None) -> dict[str, Any]:
    """What 05 writes to its metrics.json, with the files it wrote that 06 reads (`files`) and the
    gallery of what it changed (its page and counts, which the index links)."""
    extra = {"strategy": strategy.name, "relabel_thresh": cfg.relabel_thresh,
             "relabeled": relabel_counts(relabeled, cfg.scheme).iloc[:, 0].to_dict(), **curated.details,
             **(gallery or {})}
    extra.pop("file", None)
    if outcome.run is not None:
        extra["files"] = {"predictions": str(outcome.run.predictions_path), "bundle": str(outcome.run.bundle_path),
                          "relabeled": relabeled.details.get("file"), "curated": curated.details.get("file")}
    return outcome.metrics("05_relabel_and_classify", **extra)


def baseline_label_quality(strategy: Strategy, layout: Layout) -> pd.DataFrame:
    """image_id -> label_quality from the strategy's baseline predictions (checked before any work)."""
    path = layout.predictions(strategy.baseline)
    if not path.is_file():
        raise InputError(path, "not found: run 03 first")
    predictions = pd.read_csv(path)
    if "label_quality" not in predictions.columns:
        raise InputError(path, "no label_quality column: sample_weights='label_quality' needs 03 run with "
                               "wrong_from='out_of_fold'")
    return predictions[["image_id", "label_quality"]]


# ---------------------------------------------------------------- tables the notebooks show

def relabel_counts(relabeled: Outcome, scheme: LabelScheme) -> pd.DataFrame:
    """How many unsures went each way."""
    if not relabeled.applies:
        return relabeled.status_frame()
    names = label_names(relabeled.table["annotation"], scheme, excluded="excluded (not trained on)")
    return names.value_counts().rename("unsure images").to_frame()


def set_counts(built: Outcome, scheme: LabelScheme) -> pd.DataFrame:
    """Images per input and class of a built set, or why it was not built."""
    if not built.applies:
        return built.status_frame()
    if built.table is None:
        return pd.DataFrame({"set": [built.reason]})
    return class_counts(built.table, scheme, by=INPUT)


def input_counts(built: Outcome) -> dict[str, int]:
    """Rows per input set of a built set (empty when none was built)."""
    return {} if built.table is None else {k: int(v) for k, v in built.table[INPUT].value_counts().items()}
