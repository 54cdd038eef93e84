"""Errors raised on bad input: each names the file (or parameter) and the problem."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A file the pipeline was asked to read is missing or does not meet the data contract."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ParameterError(ValueError):
    """A notebook or runner parameter is unknown or malformed."""

    def __init__(self, name: str, problem: str, where: str = ""):
        self.name = name
        self.problem = problem
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}parameter {name!r}: {problem}")


class NotTrainable(InputError):
    """A valid image set that no classifier can be trained on (no rows, or one class only)."""
