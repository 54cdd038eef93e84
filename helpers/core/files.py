"""Reading the files steps hand each other: CSV files with an error naming the file, and a step's
`metrics.json` (or a status saying the step has not run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError


def read_csv_file(path: str | Path, missing: str = "file not found", *, nrows: int | None = None) -> pd.DataFrame:
    """A CSV file (its first `nrows` rows, when given) as a DataFrame; a missing or unreadable file
    raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing)
    try:
        return pd.read_csv(path, nrows=nrows)
    except Exception as exc:
        raise InputError(path, f"not a readable CSV file ({exc})") from None


def read_json_status(path: str | Path) -> dict[str, Any]:
    """A step's metrics.json, or a status saying it has not run."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {"status": "missing", "reason": f"{path} not found"}
