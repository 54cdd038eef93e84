"""The checked config of one notebook run, and the training requests it builds.

Each notebook's validation cell calls `check_parameters(notebook, collect_parameters(globals(),
before))`, which rejects an unknown, missing or malformed parameter with an error naming it and
returns a typed `Config`: the checked parameters plus the label scheme and the path layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.checks import check_value
from ..core.columns import OUT_OF_FOLD
from ..core.errors import ParameterError
from ..core.labels import LabelScheme
from ..curation.out_of_fold import FoldSettings
from ..curation.strategies import STRATEGIES
from ..curation.training_run import OperatingTargets, TrainRequest
from ..core.paths import resolve
from ..data.layout import Layout
from ..data.red_cells import RedCellCounts, read_red_cell_counts
from ..model.checkpoints import checkpoint_path
from ..model.settings import TRAIN_PARAMETERS, TrainConfig
from .parameters import NOTEBOOK_PARAMETERS, PARAMETERS, Parameters


@dataclass
class Config(Parameters):
    """The checked parameters of one notebook run (typed, as in the table), plus what derives from them."""

    notebook: str = ""
    scheme: LabelScheme = field(init=False, repr=False)
    layout: Layout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scheme = LabelScheme.from_dict(self.ann_dict)
        self.layout = Layout.from_params(self.data_dir, self.data_dir_n, self.data_dir_base, self.scheme)

    @property
    def values(self) -> dict[str, Any]:
        """The notebook's own parameters, by name (what a run records in params.json)."""
        return {name: getattr(self, name) for name in NOTEBOOK_PARAMETERS[self.notebook]}

    def train_config(self, run_name: str = "", bundle_path: Path | None = None, unlabeled: str = "ignore") -> TrainConfig:
        """The training parameters as a checked TrainConfig (errors name the parameter); `unlabeled`
        is what the fit does with the rows it has no label for (a strategy's policy).

        With `resume` on, a run continues from the checkpoint beside its bundle when one exists.
        """
        checkpoint = checkpoint_path(bundle_path) if bundle_path is not None else None
        resume_from = checkpoint if self.resume and checkpoint is not None and checkpoint.is_file() else None
        values = {name: getattr(self, name) for name in TRAIN_PARAMETERS}
        try:
            return TrainConfig(**values, run_name=run_name, resume_from=resume_from, unlabeled=unlabeled)
        except ParameterError as exc:
            raise ParameterError(exc.name, exc.problem, where=self.notebook) from None

    def train_request(self, run: str, tag: str = "", *, title: str = "", out_of_fold: FoldSettings | None = None,
                      unlabeled: str = "ignore") -> TrainRequest:
        """Everything a training run into run folder `run` (files tagged `tag`) needs: the training
        config, its two files, the operating targets, the notebook's parameters to record and, when
        given, the out-of-fold settings and the policy for the rows without a label."""
        layout = self.layout
        bundle = layout.model_perf(run, tag)
        return TrainRequest(self.train_config(run_name=f"{run}_{tag}" if tag else run, bundle_path=bundle,
                                              unlabeled=unlabeled),
                            layout.predictions(run, tag), bundle, out_of_fold=out_of_fold,
                            targets=OperatingTargets(self.precision_target, self.recall_target), params=self.values,
                            title=title or run)

    def baseline_folds(self, baseline: str) -> FoldSettings | None:
        """03: out-of-fold settings of a baseline, when `wrong_from` asks for out-of-fold outputs and
        `fold_baselines` names it."""
        if self.wrong_from != OUT_OF_FOLD or baseline not in self.fold_baselines:
            return None
        return FoldSettings(self.folds, self.fold_jobs, self.fold_ensemble, self.fold_group_by, self.issue_neighbors,
                            self.issue_features)

    @property
    def later_round_folds(self) -> FoldSettings:
        """05: out-of-fold settings of a later round of wrong-label curation (with round_folds off: no fold
        models, the round's neighbour flags only)."""
        return FoldSettings(self.folds, self.fold_jobs, group_by=self.fold_group_by, neighbors=self.issue_neighbors,
                            features=self.issue_features, fold_models=self.round_folds)

    @property
    def red_cells(self) -> RedCellCounts | None:
        """06 / 07: the red cells imaged per slide (`rbc_counts_path`), checked against the combined
        annotations; None without the file, and then no false positives per µl are given."""
        if not self.rbc_counts_path:
            return None
        return read_red_cell_counts(resolve(self.rbc_counts_path), self.layout.combined.ann)

    @property
    def fold_group_by(self) -> str:
        """The column out-of-fold folds keep whole: group_by, unless group_folds is off."""
        return self.group_by if self.group_folds else ""


def collect_parameters(namespace: Mapping[str, Any], before: set[str]) -> dict[str, Any]:
    """Names a notebook defined after `before` was taken: its parameters and injected ones."""
    return {k: v for k, v in namespace.items() if k not in before and not k.startswith("_")}


def check_parameters(notebook: str, values: Mapping[str, Any]) -> Config:
    """Validate a notebook's parameters; unknown, missing or malformed ones raise ParameterError."""
    if notebook not in NOTEBOOK_PARAMETERS:
        raise ParameterError("notebook", f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOK_PARAMETERS)}")
    known = NOTEBOOK_PARAMETERS[notebook]
    for name in values:
        if name not in known:
            raise ParameterError(name, f"unknown parameter; {notebook} takes {list(known)}", where=notebook)
    checked = {}
    for name in known:
        if name not in values:
            raise ParameterError(name, "missing", where=notebook)
        checked[name] = check_value(name, PARAMETERS[name].check, values[name], where=notebook)
    cfg = Config(**checked, notebook=notebook)
    if any(k in known for k in TRAIN_PARAMETERS if k != "seed"):
        cfg.train_config()  # e.g. cuda asked for where there is none: fails here, before any work
    if notebook == "05_relabel_and_classify":  # and what the strategy's final classifier needs of them
        cfg.train_config(unlabeled=STRATEGIES[cfg.strategy].unlabeled)
    if "review_budget" in known and cfg.review_budget and not cfg.truth_path:
        raise ParameterError("review_budget", "needs truth_path: the simulated reviewer answers from the truth",
                             where=notebook)
    if "fold_ensemble" in known and cfg.fold_ensemble and cfg.wrong_from != OUT_OF_FOLD:
        raise ParameterError("fold_ensemble", "needs wrong_from='out_of_fold' (the fold models it averages)",
                             where=notebook)
    if "round_folds" in known and not cfg.round_folds and cfg.rounds > 1:
        if cfg.flag_by != "neighbours":
            raise ParameterError("round_folds", f"false needs flag_by='neighbours' (got {cfg.flag_by!r}): without "
                                 "fold models a later round has no out-of-fold outputs for cleanlab", where=notebook)
        if len(cfg.scheme.certain_values) != 2:
            raise ParameterError("round_folds", "false needs two certain classes (the neighbour vote suggests the "
                                 f"other one), got {cfg.scheme.certain_names}", where=notebook)
    if notebook == "01_combine":
        _check_inputs_are_not_outputs(cfg)
    return cfg


def _check_inputs_are_not_outputs(cfg: Config) -> None:
    """01's inputs (sources, override file) must not be files a step writes: a later step would
    destroy them. The runner checks this for every plan, and 01 on its own."""
    inputs = [("sources", path) for pair in cfg.layout.sources(cfg.sources) for path in pair]
    if cfg.overrides_path:
        inputs.append(("overrides_path", cfg.layout.overrides(cfg.overrides_path)))
    for name, path in inputs:
        problem = cfg.layout.input_collision(path, ("s_a", "s_b", *STRATEGIES))
        if problem:
            raise ParameterError(name, f"{path} {problem}; move or rename it", where=cfg.notebook)
