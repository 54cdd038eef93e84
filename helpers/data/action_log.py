"""A reviewer's actions, appended to a CSV atomically: one action (a button press over a selection)
is one batch, so `undo` removes exactly the last action. The label-override file and the
verified-labels file are such logs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.atomic import OutputSet
from ..core.errors import InputError


class ActionLog:
    """Subclasses name their columns (`columns`, `text_columns`), what the file is (`kind`) and
    build the rows of an action."""

    columns: tuple[str, ...] = ("batch",)
    text_columns: tuple[str, ...] = ()
    kind = "reviewer's log"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        """Every row of the file (none when it does not exist yet); an unreadable file or one without
        the columns is an error naming it."""
        if not self.path.is_file():
            return pd.DataFrame(columns=list(self.columns))
        try:
            table = pd.read_csv(self.path, dtype={c: str for c in self.text_columns})
        except pd.errors.EmptyDataError:
            raise InputError(self.path, f"not a {self.kind}: it is empty (no header line)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(self.path, f"not a {self.kind}: unreadable CSV ({str(exc).strip()[:200]})") from None
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise InputError(self.path, f"not a {self.kind}: missing columns {missing}")
        return table

    def append(self, rows: pd.DataFrame) -> int:
        """Add one action's rows (their `batch` column is set here); returns its batch number."""
        table = self.read()
        batch = int(table["batch"].max()) + 1 if len(table) else 1
        rows = rows.assign(batch=batch)[list(table.columns) if len(table.columns) else rows.columns]
        self._write(pd.concat([table, rows], ignore_index=True) if len(table) else rows)
        return batch

    def undo(self) -> int:
        """Remove the last action; returns how many rows it had (0 when there is nothing to undo)."""
        table = self.read()
        if not len(table):
            return 0
        last = table["batch"] == table["batch"].max()
        self._write(table[~last])
        return int(last.sum())

    def _write(self, table: pd.DataFrame) -> None:
        with OutputSet() as out:
            table.to_csv(out.path(self.path), index=False)
