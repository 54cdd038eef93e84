"""Shared logic of the notebook suite, in layers that import only downwards:

    core      errors, parameter checks, the label scheme, column names, atomic output files, fingerprints
    data      image sets, every path (Layout), combine / split, overrides, the demo truth, demo data
    model     networks, training settings, the training loop, checkpoints, inference, the model bundle
    metrics   scikit-learn metrics, entropy, threshold sweeps, operating points
    plots     every figure (imports only core and data)
    curation  the training request and run, out-of-fold, right/wrong sets, label issues, strategies,
              relabel, proposals, comparison
    review    review logic, features, widgets
    run       the parameter table, configs, parameter files, step outcomes, steps, the DAG runner,
              reports, the CLI
"""
from importlib import import_module
from typing import Any

from .core.errors import InputError, ParameterError
from .core.labels import LabelScheme

__all__ = ["InputError", "ParameterError", "LabelScheme", "Config", "check_parameters", "collect_parameters"]
_FROM_RUN_CONFIG = ("Config", "check_parameters", "collect_parameters")


def __getattr__(name: str) -> Any:
    """The notebooks' entry points, imported on first use: a process that only reads or writes data
    (combine, split, the demo generator) does not pay for torch and scikit-learn."""
    if name in _FROM_RUN_CONFIG:
        return getattr(import_module(".run.config", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
