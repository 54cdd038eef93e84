"""The parameter table: every parameter's default, check and meaning, in one place.

`Parameters` below is the table; it inherits the training rows from helpers.model.settings. The
notebooks' parameters cells, `parameters/default.yaml`, docs/parameters.md's table (run.generated:
`python -m helpers parameters` rewrites them; `--check` and the tests fail when one drifts) and the
runner's defaults come from it. A notebook's checked parameters are a `Config` (run.config).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..core.checks import (
    Check,
    boolean,
    choice,
    integer,
    number,
    optional_text,
    param,
    text,
    text_list,
)
from ..core.columns import REVIEW_QUEUES, WRONG_FROM
from ..core.labels import DEFAULT_ANN_DICT, LabelScheme
from ..curation.label_issues import FLAG_BY, NEIGHBOUR_FEATURES
from ..curation.strategies import DEFAULT_STRATEGIES, STRATEGIES
from ..data.layout import LEGACY_TAGS, TAGS
from ..model.settings import TRAIN_PARAMETERS, TrainConfig, TrainSettings
from .parameter_files import load_parameters


def strategy_list(value: Any) -> list[str]:
    names = text_list(value)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"must be distinct names from {sorted(STRATEGIES)}, got {value!r}")
    return names


def baseline_list(value: Any) -> list[str]:
    names = text_list(value)
    if not set(names) <= {"s_a", "s_b"} or len(set(names)) != len(names):
        raise ValueError(f"must be distinct names from ['s_a', 's_b'], got {value!r}")
    return names


def ann_dict_check(value: Any) -> dict:
    return dict(LabelScheme.from_dict(value).ann_dict)


# ---------------------------------------------------------------- the table

@dataclass
class Parameters(TrainSettings):
    """Every parameter of the suite: these rows and the training rows it inherits (helpers.model.settings).
    The defaults are the origin's recipe (test_frac aside: 0 reproduces it)."""

    # folders and labels
    data_dir: str = param("data/demo/patient", "folder of the patient source and of every combined / split file "
                          "(relative paths are relative to the project root)", text)
    data_dir_n: str = param("data/demo/neg", "folder of the negative source", text)
    data_dir_base: str = param("data/demo/runs", "folder of model runs (s_a, s_b, s_1a, ...), metrics/ and reports/",
                               text)
    ann_dict: dict = param(DEFAULT_ANN_DICT, "class name -> value: 0 negative, 1 positive, 2 unsure, < 0 unlabeled",
                           ann_dict_check)
    # 01 combine
    sources: list = param([], "image .npy paths to combine, each with <stem>_ann.csv beside it; [] = the two "
                          "sources of data_dir and data_dir_n", text_list)
    test_frac: float = param(0.2, "stratified share of certain images held out as test rows (0 reproduces the origin)",
                             number(0.0, 1.0, hi_open=True))
    group_by: str = param("", "a column every source has that groups images (a slide, field of view, patient, or "
                          "source): the test split (01) and, with group_folds, every out-of-fold fold (03, 05) keep "
                          "each group whole, so no slide is scored by a model that trained on it; '' = none",
                          optional_text)
    overrides_path: str = param("data/demo/overrides.csv", "label corrections from the review widget (07); "
                                "01 applies them when the file exists; '' = none", optional_text)
    n_examples: int = param(8, "example images shown per class (03: mistakes and label issues shown)", integer(0, 64),
                            per_notebook={"03_baselines_SA_SB": 16})
    # 03 baselines
    which: str = param("both", "which baselines 03 trains: both, s_a or s_b", choice("both", "s_a", "s_b"))
    # training (03, 04, 05): the rows of helpers.model.settings.TrainSettings, and whether to resume
    resume: bool = param(False, "continue each run from its checkpoint.pt when one exists and was made from the same "
                         "inputs, parameters and code", boolean)
    # which images are wrong (03)
    wrong_from: str = param("in_sample", "which outputs decide right/wrong: in_sample (the final model's, as the "
                            "origin) or out_of_fold (models that never saw the image)", choice(*WRONG_FROM))
    folds: int = param(5, "cross-validation folds of out-of-fold runs (03 with out_of_fold, 05's rounds > 1)",
                       integer(2, 50))
    fold_baselines: list = param(["s_a", "s_b"], "out_of_fold: the baselines that train fold models; one left out "
                                 "judges right / wrong in-sample, as the origin did (SA left out: its strategies s_1a, "
                                 "s_2a, s_3a take the origin's wrong sets, and 03 trains `folds` fewer fits)",
                                 baseline_list)
    fold_jobs: int = param(1, "out_of_fold: folds trained at once in separate processes (sharing the CPU threads)",
                           integer(1, 64))
    group_folds: bool = param(True, "with group_by: out-of-fold folds keep each group whole too (false: only the test "
                              "split does, and a fold model may have seen other images of a held-out image's slide, "
                              "never the image itself)", boolean)
    fold_ensemble: bool = param(False, "out_of_fold: predict the test rows, and SB the unsures, with the fold models' "
                                "mean (kept in the bundle) instead of the final model alone", boolean)
    issue_neighbors: int = param(60, "out_of_fold: neighbours per image in the final model's feature space whose "
                                 "labels decide its neighbour_agreement (03 writes it beside cleanlab's label_quality)",
                                 integer(1, 1000))
    issue_features: str = param("image", "out_of_fold: the final model's features neighbour flags compare: image (of "
                                "the image as it is) or view_mean (the mean over its test-time views)",
                                choice(*NEIGHBOUR_FEATURES))
    precision_target: float = param(0.95, "upper operating threshold: the lowest score with precision >= this",
                                    number(0.0, 1.0))
    recall_target: float = param(0.95, "lower operating threshold: the highest score with recall >= this",
                                 number(0.0, 1.0))
    # strategies (04, 05, 06)
    strategy: str = param("s_1a", "the strategy a 04 / 05 run is: s_1a ... s_3b (origin), s_ceal, s_prop, s_2thr, "
                          "s_soft, or one that also prunes / fixes wrong labels (s_prune, s_fix, s_2thr_fix, ...)",
                          choice(*STRATEGIES))
    delta: float = param(0.5, "s_ceal: unsures whose SB prediction has entropy (bits) below this take SB's label",
                         number(0.0, 1.0))
    n_neighbors: int = param(10, "s_prop: neighbours per image in the cosine kNN graph of SB's features",
                             integer(1, 1000))
    flag_by: str = param("cleanlab", "strategies that prune or fix wrong labels: which flags they act on: cleanlab "
                         "(confident learning on out-of-fold outputs) or neighbours (most of the image's issue_neighbors "
                         "nearest neighbours in SB's feature space carry another label)", choice(*FLAG_BY))
    fix_threshold: float = param(0.8, "strategies that fix wrong labels (s_fix, ...): a flagged image takes its "
                                 "out-of-fold class when that class's out-of-fold output is at least this, "
                                 "otherwise it is pruned (a later round without round_folds: the other class, when "
                                 "at least this share of its neighbours carry it)", number(0.0, 1.0))
    rounds: int = param(1, "strategies that prune or fix wrong labels: rounds of out-of-fold -> flag -> fix "
                        "(round 1 uses 03's flags; later ones retrain out-of-fold on the curated labels and "
                        "stop when the issue list stops shrinking)", integer(1, 10))
    round_folds: bool = param(True, "with rounds > 1: a later round retrains out-of-fold models, whose outputs choose "
                              "a fixed image's class; false: only the round's own model, whose neighbour vote flags "
                              "and chooses the class (needs flag_by neighbours; a later round then costs one fit "
                              "instead of folds + 1)", boolean)
    relabel_thresh: float = param(0.9, "unsures whose differentiator parasite output is above this become parasite",
                                  number(0.0, 1.0, hi_open=True))
    strategies: list = param(list(DEFAULT_STRATEGIES), "the strategies to run and compare", strategy_list)
    # 06 compare
    truth_path: str = param("", "CSV of the hidden true class of every image_id (demo data: data/demo/truth.csv, "
                            "as demo.yaml sets): 03 trains the clean-label oracle on it, 05's gallery shows whether each change was "
                            "right, 06 scores against it; "
                            "'' = none", optional_text)
    verified_path: str = param("data/demo/verified.csv", "verified test labels: the class a person confirmed for "
                               "test rows (07 with queue 'test' writes them); 06 scores on them where they exist, "
                               "they never train a model; '' = none", optional_text)
    review_budget: int = param(0, "simulated reviewer (needs truth_path): 06 answers the first this many rows of the "
                               "test-review queue from the truth, as verified labels marked simulated; 0 = none",
                               integer(0))
    max_fpr: float = param(0.01, "the false-positive rate at which 06 reports the parasite recall (a screening "
                           "operating point)", number(1e-6, 1.0))
    primary_metric: str = param("accuracy", "test metric the verdict tests every run against SB on: accuracy, "
                                "roc_auc or f1 (accuracy: on the demo's noisy test labels roc_auc picked a run 6 points "
                                "below SB, accuracy never one below it)", choice("accuracy", "roc_auc", "f1"))
    n_bootstrap: int = param(1000, "bootstrap resamples of the test rows for confidence intervals", integer(0, 100_000))
    # 07 review
    run: str = param("s_b", "whose predictions 07 reviews: s_a, s_b or a strategy such as s_1a", text)
    tag: str = param("", "with a strategy run: cl (its final classifier; final in folders of earlier versions) or diff "
                     "(its differentiator)", choice(*TAGS, *LEGACY_TAGS.values()))
    queue: str = param("", "'' reviews the predictions of `run` (corrections go to overrides_path); 'test' walks 06's "
                       "test-review queue, the rows that decide the verdict first (labels go to verified_path as verified test labels)",
                       choice(*REVIEW_QUEUES))
    per_page: int = param(24, "images per page of the review grid", integer(1, 200))
    rbc_per_ul: float = param(5000000.0, "red cells per microlitre of blood, which false positives per µl are scaled "
                              "to", number(1.0, 1e9))
    rbc_counts_path: str = param("", "CSV of the red cells imaged per slide (an annotation column naming the slide, "
                                 "e.g. slide or source, and red_cells): with it 06 and 07 give the false positives "
                                 "per µl of each negative slide; '' = none, and the figure is left out",
                                 optional_text)


@dataclass(frozen=True)
class Parameter:
    """One row of the table, as read from `Parameters`."""

    name: str
    default: Any
    help: str
    check: Check
    per_notebook: Mapping[str, Any]

    def default_for(self, notebook: str) -> Any:
        return copy.deepcopy(self.per_notebook.get(notebook, self.default))


def _rows() -> dict[str, Parameter]:
    """The table's rows in reading order: folders and 01-03's own, the training rows, then the rest."""
    own = [f for f in fields(Parameters) if f.name not in TRAIN_PARAMETERS]
    at = [f.name for f in own].index("which") + 1
    training = [f for f in fields(Parameters) if f.name in TRAIN_PARAMETERS]
    rows = {}
    for f in [*own[:at], *training, *own[at:]]:
        default = f.default_factory() if callable(f.default_factory) else f.default
        rows[f.name] = Parameter(f.name, default, f.metadata["help"], f.metadata["check"], f.metadata["per_notebook"])
    return rows


PARAMETERS: dict[str, Parameter] = _rows()

FINAL_ONLY = ("sample_weights", "consistency_weight", "pseudo_threshold")  # act in 05's final classifier alone
TRAINING = tuple(name for name in TRAIN_PARAMETERS if name not in FINAL_ONLY)
DIRS = ("data_dir", "data_dir_n", "data_dir_base", "ann_dict")

NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_combine": (*DIRS, "sources", "test_frac", "group_by", "seed", "overrides_path", "n_examples"),
    "02_split": (*DIRS, "seed", "n_examples"),
    "03_baselines_SA_SB": (*DIRS, "which", *TRAINING, "resume", "wrong_from", "folds", "fold_baselines", "fold_jobs", "group_by",
                           "group_folds", "fold_ensemble", "issue_neighbors", "issue_features", "truth_path", "precision_target",
                           "recall_target", "n_examples"),
    "04_differentiator": (*DIRS, "strategy", *TRAINING, "resume", "delta", "n_neighbors",
                          "precision_target", "recall_target"),
    "05_relabel_and_classify": (*DIRS, "strategy", "relabel_thresh", "flag_by", "fix_threshold", "rounds", "round_folds",
                                "folds",
                                "fold_jobs", "group_by", "group_folds", "issue_neighbors", "issue_features", "truth_path",
                                *TRAINING, "resume", *FINAL_ONLY, "precision_target", "recall_target"),
    "06_compare": (*DIRS, "strategies", "truth_path", "verified_path", "review_budget", "primary_metric", "max_fpr",
                   "rbc_per_ul", "rbc_counts_path", "n_bootstrap", "seed"),
    "07_review": (*DIRS, "run", "tag", "queue", "overrides_path", "verified_path", "per_page", "rbc_per_ul",
                  "rbc_counts_path", "seed"),
}
STRATEGY_NOTEBOOKS = ("04_differentiator", "05_relabel_and_classify")
DAG_NOTEBOOKS = ("01_combine", "02_split", "03_baselines_SA_SB", *STRATEGY_NOTEBOOKS, "06_compare")  # 07 is interactive


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The defaults of a notebook's parameters, in its parameters cell's order."""
    return {name: PARAMETERS[name].default_for(notebook) for name in NOTEBOOK_PARAMETERS[notebook]}


def train_config(**overrides: Any) -> TrainConfig:
    """A TrainConfig with the table's defaults; keyword arguments override any field."""
    values = {name: PARAMETERS[name].default for name in TRAIN_PARAMETERS}
    return TrainConfig(**{**values, **overrides})


def training_rows(path: str | Path) -> dict[str, Any]:
    """The training rows a parameter file sets (with the files it extends): a recipe, e.g. for train_config."""
    return {name: value for name, value in load_parameters(path).items() if name in TRAIN_PARAMETERS}
