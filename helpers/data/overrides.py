"""Label corrections made by a reviewer, kept in their own CSV and applied when combining (step 01).

The pipeline's own files are never edited: the review widget appends to an override file, and
`combine` applies the latest value per image and field after drawing the test split.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.columns import FLAG_WORDS
from ..core.errors import InputError
from ..core.labels import LabelScheme
from .action_log import ActionLog

OVERRIDE_FIELDS = ("label", "validation", "exclude")
LABEL_FIELDS = ("label", "annotation")  # `annotation` reads as `label`: both set the image's class


def _row_problem(field, image_id, new) -> str | None:
    """What is wrong with one override row (None: nothing), before any of it is applied."""
    if not isinstance(image_id, str) or not image_id.strip():
        return "empty image_id"
    if field not in (*OVERRIDE_FIELDS, *LABEL_FIELDS):
        return f"field {field!r} is not one of {[*OVERRIDE_FIELDS, 'annotation']}"
    if field not in LABEL_FIELDS and str(new).strip().lower() not in FLAG_WORDS:
        return f"{field} of {image_id} must be true or false, got {new!r}"
    return None
OVERRIDE_COLUMNS = ["batch", "image_id", "field", "old", "new", "time", "source_file"]


class OverrideStore(ActionLog):
    """Appends label corrections (and validation / exclude flags) to a CSV, atomically.

    Columns: batch, image_id, field, old, new, time, source_file. One action (a button press over a
    selection) is one batch, so `undo` removes exactly the last action. The pipeline's own files are
    never touched; 01_combine applies the latest value per image and field.
    """

    flags = ("validation", "exclude")

    def __init__(self, path: str | Path, source_file: str = ""):
        super().__init__(path)
        self.source_file = str(source_file)

    columns = tuple(OVERRIDE_COLUMNS)
    text_columns = ("image_id", "field", "new", "old")
    kind = "label-override file"

    def read(self) -> pd.DataFrame:
        """The override rows, each checked; an error names the file and the line."""
        table = super().read()
        for position, row in enumerate(table.itertuples(index=False)):
            problem = _row_problem(row.field, row.image_id, row.new)
            if problem:
                raise InputError(self.path, f"line {position + 2}: {problem}")
        return table

    def add(self, image_ids: Sequence[str], old: Sequence, new, field: str = "label") -> int:
        """Record one action; returns its batch number."""
        if field not in OVERRIDE_FIELDS:
            raise ValueError(f"field must be one of {OVERRIDE_FIELDS}, got {field!r}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        return self.append(pd.DataFrame({"batch": 0, "image_id": list(image_ids), "field": field, "old": list(old),
                                         "new": new, "time": now, "source_file": self.source_file}))

    def record_labels(self, image_ids: Sequence[str], old: Sequence[str], new: str) -> int:
        """The review widget's action: every image relabeled `new` (from `old`)."""
        return self.add(image_ids, old, new, "label")

    def labels_in_force(self) -> pd.Series:
        """image_id -> the latest label override."""
        latest = self.latest()
        latest = latest[latest["field"] == "label"]
        return pd.Series(latest["new"].to_numpy(), index=latest["image_id"].to_numpy(), dtype=object)

    def latest(self) -> pd.DataFrame:
        """The value in force per image and field (`annotation` rows count as `label`)."""
        table = self.read()
        table["field"] = table["field"].replace({name: "label" for name in LABEL_FIELDS})
        return table.drop_duplicates(["image_id", "field"], keep="last")


def apply_overrides(ann: pd.DataFrame, overrides_path: str | Path, scheme: LabelScheme) -> tuple[pd.DataFrame, int]:
    """Annotations with the latest overrides applied (label -> annotation value; validation, exclude
    -> boolean columns). Unknown image_ids or labels are an error naming the overrides file."""
    store = OverrideStore(overrides_path)
    latest = store.latest()
    if not len(latest):
        return ann, 0
    ann = ann.copy()
    position = pd.Series(np.arange(len(ann)), index=ann["image_id"])
    unknown = latest.loc[~latest["image_id"].isin(position.index), "image_id"]
    if len(unknown):
        raise InputError(overrides_path, f"line {int(unknown.index[0]) + 2}: {len(unknown)} override(s) name images not "
                                         f"in the combined set (first: {unknown.iloc[0]})")
    for field, rows in latest.groupby("field"):
        at = position.loc[rows["image_id"]].to_numpy()
        if field == "label":
            values = rows["new"].map(lambda name: scheme.ann_dict.get(str(name)))
            if values.isna().any():
                line = int(rows.index[values.isna()][0]) + 2
                raise InputError(overrides_path, f"line {line}: label {rows['new'][values.isna()].iloc[0]!r} is not "
                                                 f"in the scheme {list(scheme.ann_dict)}")
            ann.loc[ann.index[at], "annotation"] = values.astype(float).to_numpy()
        else:
            if field not in ann.columns:
                ann[field] = False
            ann.loc[ann.index[at], field] = rows["new"].str.strip().str.lower().map(FLAG_WORDS).to_numpy(dtype=bool)
    return ann, len(latest)
