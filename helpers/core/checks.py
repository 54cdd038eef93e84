"""The one vocabulary for checking parameters, and the row a parameter table is made of.

A check takes a value and returns it (converted where that is the point, e.g. an int to a float)
or raises ValueError saying what it must be; `check_fields` runs the checks of a dataclass's rows
and turns the first failure into a ParameterError naming the parameter. The parameter table
(helpers.run.parameters) and the training settings (helpers.model.settings) use the same checks.
"""
from __future__ import annotations

import copy
import math
from dataclasses import field, fields
from typing import Any, Callable, Mapping

from .errors import ParameterError

Check = Callable[[Any], Any]


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def optional_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string ('' for none), got {value!r}")
    return value


def text_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of non-empty strings, got {value!r}")
    return list(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer in [lo, hi] (either bound may be open-ended: None)."""
    def check(value: Any) -> int:
        if not is_int(value):
            raise ValueError(f"must be an integer, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"must be in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}], "
                             f"got {value}")
        return value
    return check


def number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A finite number in the interval from lo to hi (each end closed unless said open), as a float."""
    def check(value: Any) -> float:
        if not is_number(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise ValueError(f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {value}")
        return float(value)
    return check


def choice(*options: str) -> Check:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {list(options)}, got {value!r}")
        return value
    return check


def param(default: Any, help: str, check: Check, per_notebook: Mapping[str, Any] | None = None) -> Any:
    """One row of a parameter table: a dataclass field with its default, meaning and check.
    `per_notebook` gives a notebook its own default."""
    metadata = {"help": help, "check": check, "per_notebook": dict(per_notebook or {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_value(name: str, check: Check, value: Any, where: str = "") -> Any:
    """`check(value)`, its ValueError (or a nested ParameterError) turned into a ParameterError naming `name`."""
    try:
        return check(value)
    except ParameterError as exc:
        raise ParameterError(name, exc.problem, where=where) from None
    except ValueError as exc:
        raise ParameterError(name, str(exc), where=where) from None


def check_fields(obj: Any) -> None:
    """Run the check of every row (field made by `param`) of a dataclass instance on its value."""
    for f in fields(obj):
        if "check" in f.metadata:
            check_value(f.name, f.metadata["check"], getattr(obj, f.name))
