"""Shared logic of the notebook suite, in layers that import only downwards:

    core      errors, the label scheme, column names, atomic output files
    data      image sets, every path (Layout), combine / split, overrides, demo data
    model     networks, the training loop, inference, the model bundle
    metrics   scikit-learn metrics, threshold sweeps, operating points
    plots     every figure (imports only core and data)
    curation  right/wrong sets, out-of-fold, label issues, strategies, relabel, proposals, comparison
    review    review logic, features, widgets
    run       the parameter table, step outcomes, steps, the DAG runner, reports, the CLI
"""
from .core.errors import InputError, ParameterError
from .core.labels import LabelScheme
from .run.parameters import Config, check_parameters, collect_parameters

__all__ = ["InputError", "ParameterError", "LabelScheme", "Config", "check_parameters", "collect_parameters"]
