"""Shared logic of the notebook suite: data contracts, pipeline steps, models, reports."""
from .errors import InputError, ParameterError
from .labels import LabelScheme
from .params import Config, check_parameters, collect_parameters

__all__ = ["InputError", "ParameterError", "LabelScheme", "Config", "check_parameters", "collect_parameters"]
