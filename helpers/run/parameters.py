"""The parameter table: every parameter's default, check and meaning, in one place.

`Parameters` below is the table. The notebooks' parameters cells, `parameters/default.yaml`, the
README's parameter table (run.generated: `python -m helpers parameters` rewrites them; `--check`
and the tests fail when one drifts) and the runner's defaults come from it.

Each notebook's validation cell calls `check_parameters(notebook, collect_parameters(globals(),
before))`, which rejects an unknown, missing or malformed parameter with an error naming it and
returns a typed `Config`: the checked parameters plus the label scheme and the path layout.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..core.columns import WRONG_FROM
from ..core.errors import ParameterError
from ..core.labels import DEFAULT_ANN_DICT, LabelScheme
from ..curation.strategies import DEFAULT_STRATEGIES, STRATEGIES
from ..data.layout import TAGS, Layout
from ..model.training import TrainConfig, checkpoint_path

Check = Callable[[Any], Any]


# ---------------------------------------------------------------- checks (each returns the value or raises ValueError)

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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
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


def _strategy_list(value: Any) -> list[str]:
    names = _str_list(value)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"must be distinct names from {sorted(STRATEGIES)}, got {value!r}")
    return names


def _ann_dict(value: Any) -> dict:
    return dict(LabelScheme.from_dict(value).ann_dict)


# ---------------------------------------------------------------- the table

def param(default: Any, help: str, check: Check | None = None, per_notebook: Mapping[str, Any] | None = None) -> Any:
    """One row of the table. `check` None: checked with the other training parameters by TrainConfig.
    `per_notebook` gives a notebook its own default."""
    metadata = {"help": help, "check": check, "per_notebook": dict(per_notebook or {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Parameters:
    """Every parameter of the suite. The defaults are the origin's recipe (test_frac aside: 0 reproduces it)."""

    # folders and labels
    data_dir: str = param("data/demo/patient", "folder of the patient source and of every combined / split file "
                          "(relative paths are relative to the project root)", _str)
    data_dir_n: str = param("data/demo/neg", "folder of the negative source", _str)
    data_dir_base: str = param("data/demo/runs", "folder of model runs (s_a, s_b, s_1a, ...), metrics/ and reports/", _str)
    ann_dict: dict = param(DEFAULT_ANN_DICT, "class name -> value: 0 negative, 1 positive, 2 unsure, < 0 unlabeled",
                           _ann_dict)
    # 01 combine
    sources: list = param([], "image .npy paths to combine, each with <stem>_ann.csv beside it; [] = the two "
                          "sources of data_dir and data_dir_n", _str_list)
    test_frac: float = param(0.2, "stratified share of certain images held out as test rows (0 reproduces the origin)",
                             _float(0.0, 1.0, hi_open=True))
    seed: int = param(0, "random seed: same seed, same machine, same results", _int(0))
    overrides_path: str = param("data/demo/overrides.csv", "label corrections from the review widget (07); "
                                "01 applies them when the file exists; '' = none", _opt_str)
    n_examples: int = param(8, "example images shown per class (03: mistakes and label issues shown)", _int(0, 64),
                            per_notebook={"03_baselines_SA_SB": 16})
    # 03 baselines
    which: str = param("both", "which baselines 03 trains: both, s_a or s_b", _choice("both", "s_a", "s_b"))
    # training (03, 04, 05); checked together by TrainConfig
    arch: str = param("resnet18", "network: resnet10, resnet18 (origin), resnet34 or resnet50")
    width: int = param(64, "base channels: 64 = origin, 16 or 32 for fast runs")
    epochs: int = param(40, "training epochs")
    batch_size: int = param(32, "training batch size")
    lr: float = param(0.001, "Adam learning rate")
    val_frac: float = param(0.3, "share of trainable rows used for validation")
    loss: str = param("cross_entropy", "cross_entropy or focal")
    focal_gamma: float = param(2.0, "focusing parameter of the focal loss")
    label_smoothing: float = param(0.0, "label smoothing in [0, 1)")
    class_weights: str = param("none", "none, or balanced: each class's loss weighted by n / (classes x count)")
    keep_weights: str = param("best", "best: weights of the epoch with the best validation score (select_by); last: of "
                              "the final epoch (as the origin)")
    select_by: str = param("val_loss", "the validation score that picks the best epoch: val_loss (all validation rows), "
                           "val_accuracy or val_roc_auc (on the certain validation rows, not relabeled unsures)")
    patience: int = param(0, "stop after this many epochs without a better validation score; 0 = never")
    optimizer: str = param("adam", "adam, or adamw (decoupled weight decay)")
    weight_decay: float = param(0.0, "weight decay of the optimizer")
    schedule: str = param("constant", "learning rate per batch: constant, onecycle (up to lr over the first 30%, then "
                          "down) or cosine (one epoch of warm-up, then down to 0)")
    augment: str = param("none", "none, flips_rot90 (the 8 symmetries of the square, for crops with no up or down) "
                         "or flips_rot90_shift (also shifts of up to 2 pixels)")
    tta: bool = param(False, "test-time augmentation: predict the mean output over the image's symmetries")
    calibrate: bool = param(False, "fit a softmax temperature on the validation rows, so outputs such as 0.9 mean "
                            "what they say")
    device: str = param("auto", "auto (CUDA when present), cpu or cuda[:N]")
    resume: bool = param(False, "continue each run from its checkpoint.pt when one exists and was made from the same "
                         "inputs, parameters and code", _bool)
    sample_weights: str = param("none", "none, or label_quality: each image's loss weighted by the baseline's "
                                "label quality (needs 03 with wrong_from='out_of_fold')")
    # which images are wrong (03)
    wrong_from: str = param("in_sample", "which outputs decide right/wrong: in_sample (the final model's, as the "
                            "origin) or out_of_fold (models that never saw the image)", _choice(*WRONG_FROM))
    folds: int = param(5, "cross-validation folds of out-of-fold runs (03 with out_of_fold, 05's rounds > 1)", _int(2, 50))
    fold_jobs: int = param(1, "out_of_fold: folds trained at once in separate processes (sharing the CPU threads)",
                           _int(1, 64))
    fold_ensemble: bool = param(False, "out_of_fold: predict the test rows, and SB the unsures, with the fold models' "
                                "mean (kept in the bundle) instead of the final model alone", _bool)
    precision_target: float = param(0.95, "upper operating threshold: the lowest score with precision >= this",
                                    _float(0.0, 1.0))
    recall_target: float = param(0.95, "lower operating threshold: the highest score with recall >= this",
                                 _float(0.0, 1.0))
    # strategies (04, 05, 06)
    strategy: str = param("s_1a", "the strategy a 04 / 05 run is: s_1a ... s_3b (origin), s_ceal, s_prop, s_2thr, "
                          "s_soft, or one that also prunes / fixes wrong labels (s_prune, s_fix, s_2thr_fix, ...)",
                          _choice(*STRATEGIES))
    delta: float = param(0.5, "s_ceal: unsures whose SB prediction has entropy (bits) below this take SB's label",
                         _float(0.0, 1.0))
    n_neighbors: int = param(10, "s_prop: neighbours per image in the cosine kNN graph of SB's features",
                             _int(1, 1000))
    fix_threshold: float = param(0.8, "strategies that fix wrong labels (s_fix, ...): a flagged image takes its "
                                 "out-of-fold class when that class's out-of-fold output is at least this, "
                                 "otherwise it is pruned", _float(0.0, 1.0))
    rounds: int = param(1, "strategies that prune or fix wrong labels: rounds of out-of-fold -> flag -> fix "
                        "(round 1 uses 03's flags; later ones retrain out-of-fold on the curated labels and "
                        "stop when the issue list stops shrinking)", _int(1, 10))
    relabel_thresh: float = param(0.9, "unsures whose differentiator parasite output is above this become parasite",
                                  _float(0.0, 1.0, hi_open=True))
    strategies: list = param(list(DEFAULT_STRATEGIES), "the strategies to run and compare", _strategy_list)
    # 06 compare
    truth_path: str = param("", "CSV of the hidden true class of every image_id (demo data: data/demo/truth.csv, "
                            "as demo.yaml sets): 03 trains the clean-label oracle on it, 06 scores against it; "
                            "'' = none", _opt_str)
    max_fpr: float = param(0.01, "the false-positive rate at which 06 reports the parasite recall (a screening "
                           "operating point)", _float(1e-6, 1.0))
    primary_metric: str = param("roc_auc", "test metric that decides the best strategy: roc_auc, accuracy or f1",
                                _choice("roc_auc", "accuracy", "f1"))
    n_bootstrap: int = param(1000, "bootstrap resamples of the test rows for confidence intervals", _int(0, 100_000))
    # 07 review
    run: str = param("s_b", "whose predictions 07 reviews: s_a, s_b or a strategy such as s_1a", _str)
    tag: str = param("", "with a strategy run: final (its final classifier) or diff (its differentiator)",
                     _choice(*TAGS))
    per_page: int = param(24, "images per page of the review grid", _int(1, 200))
    rbc_per_ul: float = param(5000000.0, "assumed red cells per microlitre, for false positives per µl",
                              _float(1.0, 1e9))


@dataclass(frozen=True)
class Parameter:
    """One row of the table, as read from `Parameters`."""

    name: str
    default: Any
    help: str
    check: Check | None
    per_notebook: Mapping[str, Any]

    def default_for(self, notebook: str) -> Any:
        return copy.deepcopy(self.per_notebook.get(notebook, self.default))


def _rows() -> dict[str, Parameter]:
    rows = {}
    for f in fields(Parameters):
        default = f.default_factory() if callable(f.default_factory) else f.default
        rows[f.name] = Parameter(f.name, default, f.metadata["help"], f.metadata["check"], f.metadata["per_notebook"])
    return rows


PARAMETERS: dict[str, Parameter] = _rows()

TRAIN_PARAMETERS = ("arch", "width", "epochs", "batch_size", "lr", "val_frac", "loss", "focal_gamma",
                    "label_smoothing", "class_weights", "keep_weights", "select_by", "patience", "optimizer",
                    "weight_decay", "schedule", "augment", "tta", "calibrate", "device", "seed")
DIRS = ("data_dir", "data_dir_n", "data_dir_base", "ann_dict")

NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_combine": (*DIRS, "sources", "test_frac", "seed", "overrides_path", "n_examples"),
    "02_split": (*DIRS, "seed", "n_examples"),
    "03_baselines_SA_SB": (*DIRS, "which", *TRAIN_PARAMETERS, "resume", "wrong_from", "folds", "fold_jobs",
                           "fold_ensemble", "truth_path", "precision_target", "recall_target", "n_examples"),
    "04_differentiator": (*DIRS, "strategy", *TRAIN_PARAMETERS, "resume", "delta", "n_neighbors",
                          "precision_target", "recall_target"),
    "05_relabel_and_classify": (*DIRS, "strategy", "relabel_thresh", "fix_threshold", "rounds", "folds", "fold_jobs",
                                *TRAIN_PARAMETERS, "resume", "sample_weights", "precision_target", "recall_target"),
    "06_compare": (*DIRS, "strategies", "relabel_thresh", "truth_path", "primary_metric", "max_fpr", "rbc_per_ul",
                   "n_bootstrap", "seed"),
    "07_review": (*DIRS, "run", "tag", "overrides_path", "per_page", "rbc_per_ul", "seed"),
}
STRATEGY_NOTEBOOKS = ("04_differentiator", "05_relabel_and_classify")
DAG_NOTEBOOKS = ("01_combine", "02_split", "03_baselines_SA_SB", *STRATEGY_NOTEBOOKS, "06_compare")  # 07 is interactive


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The defaults of a notebook's parameters, in its parameters cell's order."""
    return {name: PARAMETERS[name].default_for(notebook) for name in NOTEBOOK_PARAMETERS[notebook]}


def train_config(**overrides: Any) -> TrainConfig:
    """A TrainConfig with the table's defaults; keyword arguments override any field."""
    values = {name: PARAMETERS[name].default for name in (*TRAIN_PARAMETERS, "sample_weights")}
    return TrainConfig(**{**values, **overrides})


# ---------------------------------------------------------------- the checked config of one notebook run

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

    def train_config(self, run_name: str = "", bundle_path: Path | None = None) -> TrainConfig:
        """The training parameters as a checked TrainConfig (errors name the parameter).

        With `resume` on, a run continues from the checkpoint beside its bundle when one exists.
        """
        checkpoint = checkpoint_path(bundle_path) if bundle_path is not None else None
        resume_from = checkpoint if self.resume and checkpoint is not None and checkpoint.is_file() else None
        values = {name: getattr(self, name) for name in (*TRAIN_PARAMETERS, "sample_weights")}
        try:
            return TrainConfig(**values, run_name=run_name, resume_from=resume_from)
        except ParameterError as exc:
            raise ParameterError(exc.name, exc.problem, where=self.notebook) from None


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
        check = PARAMETERS[name].check
        try:
            checked[name] = check(values[name]) if check else values[name]
        except ParameterError as exc:
            raise ParameterError(name, exc.problem, where=notebook) from None
        except ValueError as exc:
            raise ParameterError(name, str(exc), where=notebook) from None
    cfg = Config(**checked, notebook=notebook)
    if any(k in known for k in TRAIN_PARAMETERS if k != "seed"):
        cfg.train_config()  # malformed training parameters fail here, before any work
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


# ---------------------------------------------------------------- parameter files for the runner

def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (numbers, lists, dicts, strings); `key=` is ''."""
    if "=" not in text:
        raise ParameterError(text, "override must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), read_yaml(value) if value.strip() else ""  # `key=` means an empty string, not null


class _Loader(yaml.SafeLoader):
    """YAML as people write numbers: `1e-3` and `5E6` are floats (YAML 1.2), not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """safe_load with YAML 1.2's floats (`1e-3`)."""
    return yaml.load(text, Loader=_Loader)


def load_parameters(paths: list[str | Path] | str | Path, overrides: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Layer YAML files (later ones win, per-notebook/per-strategy sections merged) and overrides.

    A file may name the files it builds on with `extends: other.yaml` (or a list; paths relative to
    the file): they are layered first, then the file itself.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict[str, Any] = {}
    for path in paths:
        _layer_file(merged, Path(path), ())
    merged.update(dict(parse_override(o) for o in overrides))
    return merged


def _layer_file(merged: dict[str, Any], path: Path, chain: tuple[Path, ...]) -> None:
    """Layer one parameters file (after the files it extends) onto `merged`."""
    if not path.is_file():
        raise ParameterError(str(path), "parameters file not found" + (f" (extended by {chain[-1]})" if chain else ""))
    if path.resolve() in chain:
        raise ParameterError(str(path), "extends itself through " + " -> ".join(map(str, chain)))
    try:
        data = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(str(path), f"not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParameterError(str(path), "must be a YAML mapping of parameter: value")
    bases = data.pop("extends", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ParameterError(str(path), f"extends must be a file name or a list of them, got {bases!r}")
    for base in bases:
        _layer_file(merged, path.parent / base, (*chain, path.resolve()))
    for key, value in data.items():
        if key in ("per_notebook", "per_strategy") and isinstance(value, dict):
            section = merged.setdefault(key, {})
            for name, params in value.items():
                section.setdefault(name, {}).update(params or {})
        else:
            merged[key] = value
