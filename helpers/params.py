"""Notebook parameters: one table of what each parameter may be, checked like scikit-learn does.

Each notebook's `parameters` cell holds flat literals; its validation cell calls
`check_parameters(notebook, collect_parameters(globals(), before))`, which rejects an unknown or
malformed parameter with an error naming it, and returns a `Config` with the derived objects
(label scheme, path layout).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import ParameterError
from .labels import LabelScheme
from .layout import Layout

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
}

NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_combine": ("data_dir", "data_dir_n", "data_dir_base", "ann_dict", "sources", "test_frac", "seed", "n_examples"),
    "02_split": ("data_dir", "data_dir_n", "data_dir_base", "ann_dict", "seed", "n_examples"),
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
    return Config(notebook, checked)
