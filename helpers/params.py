"""Notebook parameters: one table of what each parameter may be, checked like scikit-learn does.

Each notebook's `parameters` cell holds flat literals; its validation cell calls
`check_parameters(notebook, collect_parameters(globals(), before))`, which rejects an unknown or
malformed parameter with an error naming it, and returns a `Config` with the derived objects
(label scheme, path layout).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import ParameterError
from .labels import LabelScheme
from .layout import Layout

if TYPE_CHECKING:
    from .training import TrainConfig

Check = Callable[[Any], Any]


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _opt_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string ('' for none), got {value!r}")
    return value


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of non-empty strings, got {value!r}")
    return list(value)


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
        return value
    return check


def _float(lo: float, hi: float, hi_open: bool = False) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        if value < lo or value > hi or (hi_open and value == hi):
            raise ValueError(f"must be in [{lo}, {hi}{')' if hi_open else ']'}, got {value}")
        return float(value)
    return check


def _choice(*options: str) -> Check:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {list(options)}, got {value!r}")
        return value
    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def _as_is(value: Any) -> Any:
    """Checked later, with the others of its group (e.g. by TrainConfig)."""
    return value


def _strategy(value: Any) -> str:
    from .strategies import STRATEGIES

    return _choice(*STRATEGIES)(value)


def _strategy_list(value: Any) -> list[str]:
    from .strategies import STRATEGIES

    names = _str_list(value)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"must be distinct names from {sorted(STRATEGIES)}, got {value!r}")
    return names


def _wrong_from(value: Any) -> str:
    from .evaluation import WRONG_FROM

    return _choice(*WRONG_FROM)(value)


def _ann_dict(value: Any) -> dict:
    return dict(LabelScheme.from_dict(value).ann_dict)


SPECS: dict[str, tuple[Check, str]] = {
    "data_dir": (_str, "folder of the patient source and of every combined/split file"),
    "data_dir_n": (_str, "folder of the negative source"),
    "data_dir_base": (_str, "folder of model runs (s_a, s_b, s_1a, ...), metrics and reports"),
    "ann_dict": (_ann_dict, "class name -> value; 0 negative, 1 positive, 2 unsure, <0 unlabeled"),
    "sources": (_str_list, "image .npy paths to combine (each with <stem>_ann.csv beside it); [] = seed's two"),
    "test_frac": (_float(0.0, 1.0, hi_open=True), "stratified share of certain images held out as split=test"),
    "seed": (_int(0), "random seed: same seed, same machine, same results"),
    "n_examples": (_int(0, 64), "example images shown per class"),
    "overrides_path": (_opt_str, "label-override CSV written by the review widget; applied by 01 when present"),
    "which": (_choice("both", "s_a", "s_b"), "which baselines 03 trains"),
    "arch": (_as_is, "resnet10 / resnet18 (origin) / resnet34 / resnet50"),
    "width": (_as_is, "base channels: 64 = origin, 16 or 32 for fast runs"),
    "epochs": (_as_is, "training epochs (seed: 40)"),
    "batch_size": (_as_is, "training batch size (seed: 32)"),
    "lr": (_as_is, "Adam learning rate (seed: 1e-3)"),
    "val_frac": (_as_is, "share of trainable rows used for validation (seed: 0.3)"),
    "loss": (_as_is, "cross_entropy or focal"),
    "focal_gamma": (_as_is, "focusing parameter of the focal loss"),
    "label_smoothing": (_as_is, "label smoothing in [0, 1)"),
    "class_weights": (_as_is, "none or balanced"),
    "patience": (_as_is, "early stopping after this many epochs without a better val loss; 0 = off"),
    "keep_weights": (_as_is, "best (lowest validation loss) or last (the final epoch, as the seed)"),
    "sample_weights": (_as_is, "none, or label_quality: each row's loss weighted by its label quality (needs 03 out_of_fold)"),
    "wrong_from": (_wrong_from, "which outputs decide right/wrong: the final model's (seed) "
                   "or out-of-fold ones from models that never saw the image"),
    "folds": (_int(2, 50), "cross-validation folds for out_of_fold predictions"),
    "fold_jobs": (_int(1, 64), "folds trained in parallel processes (CPU threads shared between them)"),
    "delta": (_float(0.0, 1.0), "s_ceal: unsures whose SB prediction has entropy (bits) below this get SB's label"),
    "n_neighbors": (_int(1, 1000), "s_prop: neighbours per image in the cosine kNN graph of SB's features"),
    "device": (_as_is, "auto (CUDA when present), cpu or cuda[:N]"),
    "resume": (_bool, "continue each run from its checkpoint.pt when one exists"),
    "strategy": (_strategy, "which strategy a 04/05 run is: s_1a ... s_3b (seed), s_ceal, s_prop, s_2thr"),
    "strategies": (_strategy_list, "the strategies to run and compare"),
    "relabel_thresh": (_float(0.0, 1.0, hi_open=True), "unsures with differentiator parasite output above this become parasite"),
    "run": (_str, "whose predictions 07 reviews: s_a, s_b or a strategy such as s_1a"),
    "tag": (_choice("", "cl", "diff"), "with a strategy run: cl (final classifier) or diff (differentiator)"),
    "per_page": (_int(1, 200), "images per page of the review grid"),
    "rbc_per_ul": (_float(1.0, 1e9), "assumed red cells per microlitre, for false positives per µl"),
    "truth_path": (_opt_str, "CSV of hidden true classes by image_id (demo only); '' = none"),
    "primary_metric": (_choice("roc_auc", "accuracy", "f1"), "test metric that decides the best strategy"),
    "n_bootstrap": (_int(0, 100_000), "bootstrap resamples of the test rows for confidence intervals"),
    "precision_target": (_float(0.0, 1.0), "seed-003 threshold: lowest score with precision >= this"),
    "recall_target": (_float(0.0, 1.0), "seed-003 threshold: highest score with recall >= this"),
}

TRAIN_PARAMETERS = ("arch", "width", "epochs", "batch_size", "lr", "val_frac", "loss", "focal_gamma",
                    "label_smoothing", "class_weights", "keep_weights", "patience", "device", "seed")
DIRS = ("data_dir", "data_dir_n", "data_dir_base", "ann_dict")

NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_combine": (*DIRS, "sources", "test_frac", "seed", "overrides_path", "n_examples"),
    "02_split": (*DIRS, "seed", "n_examples"),
    "03_baselines_SA_SB": (*DIRS, "which", *TRAIN_PARAMETERS, "resume", "wrong_from", "folds", "fold_jobs",
                           "precision_target", "recall_target", "n_examples"),
    "04_differentiator": (*DIRS, "strategy", *TRAIN_PARAMETERS, "resume", "delta", "n_neighbors",
                          "precision_target", "recall_target"),
    "05_relabel_and_classify": (*DIRS, "strategy", "relabel_thresh", *TRAIN_PARAMETERS, "resume", "sample_weights",
                                "precision_target", "recall_target"),
    "06_compare": (*DIRS, "strategies", "relabel_thresh", "truth_path", "primary_metric", "n_bootstrap", "seed"),
    "07_review": (*DIRS, "run", "tag", "overrides_path", "per_page", "rbc_per_ul", "seed"),
}


@dataclass
class Config:
    """Checked parameters of one notebook run, plus the objects derived from them."""

    notebook: str
    values: dict[str, Any]
    scheme: LabelScheme = field(init=False)
    layout: Layout = field(init=False)

    def __post_init__(self) -> None:
        self.scheme = LabelScheme.from_dict(self.values["ann_dict"])
        self.layout = Layout.from_params(self.values["data_dir"], self.values["data_dir_n"],
                                         self.values["data_dir_base"], self.scheme)

    def train_config(self, run_name: str = "", bundle_path: "Path | None" = None) -> "TrainConfig":
        """The training parameters as a checked TrainConfig (errors name the parameter).

        With `resume` on, a run continues from the checkpoint beside its bundle when one exists.
        """
        from .training import TrainConfig, checkpoint_path

        values = {k: self.values[k] for k in (*TRAIN_PARAMETERS, "sample_weights") if k in self.values}
        checkpoint = checkpoint_path(bundle_path) if bundle_path is not None else None
        resume = str(checkpoint) if self.values.get("resume") and checkpoint and checkpoint.is_file() else ""
        try:
            return TrainConfig(**values, run_name=run_name, resume=resume)
        except ParameterError as exc:
            raise ParameterError(exc.name, exc.problem, where=self.notebook) from None
        except TypeError as exc:
            raise ParameterError("training", str(exc), where=self.notebook) from None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None


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
        try:
            checked[name] = SPECS[name][0](values[name])
        except ParameterError as exc:
            raise ParameterError(name, exc.problem, where=notebook) from None
        except ValueError as exc:
            raise ParameterError(name, str(exc), where=notebook) from None
    cfg = Config(notebook, checked)
    if any(k in known for k in TRAIN_PARAMETERS if k != "seed"):
        cfg.train_config()  # malformed training parameters fail here, before any work
    return cfg
