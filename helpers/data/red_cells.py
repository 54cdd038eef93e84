"""Red cells imaged per slide: what the origin's false positives per µl are counted against.

The origin counts the false-positive spots a classifier finds on a negative slide against the number
of red cells imaged on that slide, and scales that rate to a microlitre of blood (`rbc_per_ul` red
cells). A crop is not a red cell, so without these counts the figure is not defined and the reports
leave it out.

The file (`rbc_counts_path`) is a CSV of two columns: one the annotations carry that names a slide
(e.g. `slide`, or `source` for one count per source file) and `red_cells`, a positive number per
slide. Every slide with test rows needs its count.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.columns import test_mask
from ..core.errors import InputError
from ..core.files import read_csv_file

RED_CELLS = "red_cells"


@dataclass(frozen=True)
class RedCellCounts:
    path: Path
    key: str  # the annotation column that names a slide
    counts: pd.Series  # slide -> red cells imaged on it
    in_test: pd.Series  # slide with test rows -> the red cells its test crops stand for (see test_share)


def read_red_cell_counts(path: str | Path, combined_ann_path: str | Path | None = None) -> RedCellCounts:
    """The counts in `path`, checked; with the combined annotations also that their slide column exists
    and that every slide with test rows has a count. InputError naming `path` for anything wrong."""
    path = Path(path)
    table = read_csv_file(path, missing="not found (rbc_counts_path: red cells imaged per slide)")
    keys = [c for c in table.columns if c != RED_CELLS]
    if RED_CELLS not in table.columns or len(keys) != 1:
        raise InputError(path, f"needs two columns, the annotation column that names a slide (e.g. slide or source) "
                               f"and {RED_CELLS}; found {list(table.columns)}")
    key = keys[0]
    if table[key].isna().any():
        raise InputError(path, f"column {key!r} is empty in row {int(np.flatnonzero(table[key].isna())[0])}")
    slides = table[key].astype(str)
    if slides.duplicated().any():
        raise InputError(path, f"{key} {slides[slides.duplicated()].iloc[0]!r} has two counts")
    counts = pd.to_numeric(table[RED_CELLS], errors="coerce")
    bad = ~(np.isfinite(counts) & (counts > 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(path, f"{RED_CELLS} must be a positive number of red cells: {key} {slides[row]!r} has "
                               f"{table[RED_CELLS].astype(str).iloc[row]}")
    counts = pd.Series(counts.to_numpy(dtype=float), index=slides.to_numpy(), name=RED_CELLS)
    if combined_ann_path is None:
        return RedCellCounts(path, key, counts, counts.iloc[:0])
    combined = read_csv_file(combined_ann_path)
    if key not in combined.columns:
        raise InputError(path, f"column {key!r} is not a column of the annotations ({combined_ann_path}); "
                               "name the slide column they carry")
    share = test_share(combined[key].astype(str), test_mask(combined))
    missing = [s for s in share.index if s not in counts.index]
    if missing:
        raise InputError(path, f"no count for {key} {missing[0]!r} ({len(missing)} slide(s) with test rows in "
                               f"{combined_ann_path} have none)")
    return RedCellCounts(path, key, counts, (counts.loc[share.index] * share).rename(RED_CELLS))


def test_share(slides: pd.Series, test: np.ndarray) -> pd.Series:
    """Per slide with test rows: the share of its crops that are test rows. Its test crops stand for
    that share of the red cells imaged on it (all of them for a slide wholly in the test rows, as
    with `group_by` on the slide column)."""
    return (slides[test].value_counts() / slides.value_counts()).dropna()
