"""Verified test labels: the class a person confirmed for a test row, with who, when and from which
queue, kept in their own CSV apart from the annotations.

A verified label changes scoring only (06 scores a test row on it instead of its annotation): it
never trains a model, never moves the test split and never makes a training step rerun. The test
rows' annotations carry the same noise as every other label, so a test set scored on them alone
rewards the model that copies the annotators' errors.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.columns import FLAG_WORDS, test_mask
from ..core.errors import InputError
from ..core.labels import LabelScheme
from .action_log import ActionLog

VERIFIED_COLUMNS = ["batch", "image_id", "label", "annotated", "who", "time", "queue", "simulated"]


class VerifiedStore(ActionLog):
    """Appends verified labels to a CSV, atomically; one action (a button press over a selection)
    is one batch, so `undo` removes exactly the last action. `who` and `queue` are recorded with
    every label it adds."""

    flags: tuple[str, ...] = ()  # a verified label is a class; there is nothing to flag
    columns = tuple(VERIFIED_COLUMNS)
    text_columns = ("image_id", "label", "annotated", "who", "queue")
    kind = "verified-labels file"

    def __init__(self, path: str | Path, who: str = "", queue: str = "test"):
        super().__init__(path)
        self.who, self.queue = who, queue

    def add(self, image_ids: Sequence[str], labels: Sequence[str] | str, *, annotated: Sequence[str],
            simulated: bool = False) -> int:
        """Record one action (a label per image); returns its batch number."""
        return self.append(pd.DataFrame({"batch": 0, "image_id": list(image_ids), "label": labels,
                                         "annotated": list(annotated), "who": self.who,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "queue": self.queue,
                                         "simulated": simulated}))

    def record_labels(self, image_ids: Sequence[str], old: Sequence[str], new: str) -> int:
        """The review widget's action: `new` confirmed for every image (annotated `old`)."""
        return self.add(image_ids, new, annotated=old)

    def labels_in_force(self) -> pd.Series:
        """image_id -> the latest verified label."""
        table = self.read().drop_duplicates("image_id", keep="last")
        return pd.Series(table["label"].to_numpy(), index=table["image_id"].to_numpy(), dtype=object)



def verified_labels(path: str | Path, combined_ann: pd.DataFrame, scheme: LabelScheme) -> pd.DataFrame:
    """The label in force per verified test row (the latest), as image_id, value (the class value),
    who, time, queue and simulated. Every row is checked first: an image not in the combined set, a
    row that is not a test row, or a label that is not a certain class is an error naming the file and
    line."""
    table = VerifiedStore(path).read()
    position = pd.Series(np.arange(len(combined_ann)), index=combined_ann["image_id"].to_numpy())
    test = test_mask(combined_ann)
    certain = {scheme.name_of(v): v for v in scheme.certain_values}
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False)):
        problem = _verified_row_problem(row, position, test, certain)
        if problem:
            raise InputError(path, f"line {line}: {problem}")
    latest = table.drop_duplicates("image_id", keep="last")
    return pd.DataFrame({"image_id": latest["image_id"].to_numpy(),
                         "value": latest["label"].map(certain).to_numpy(dtype=int),
                         "who": latest["who"].to_numpy(), "time": latest["time"].to_numpy(),
                         "queue": latest["queue"].to_numpy(),
                         "simulated": latest["simulated"].astype(str).str.lower().map(FLAG_WORDS).fillna(False)
                         .to_numpy(dtype=bool)})


def _verified_row_problem(row, position: pd.Series, test: np.ndarray, certain: dict[str, int]) -> str | None:
    if row.image_id not in position.index:
        return f"image {row.image_id!r} is not in the combined set"
    if not test[position[row.image_id]]:
        return f"image {row.image_id!r} is not a test row: verified labels score the test rows only"
    if row.label not in certain:
        return f"label {row.label!r} is not one of the certain classes {list(certain)}"
    return None
