"""Combine labelled sources into one image set, and split it by class (the pipeline's steps 01 and 02)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..core.atomic import OutputSet
from ..core.columns import INPUT
from ..core.errors import InputError, ParameterError
from ..core.labels import LabelScheme, round_annotations
from .overrides import apply_overrides
from .sets import (
    Pair,
    check_compatible,
    check_pixel_values,
    iter_chunks,
    open_image_set,
    suffixed,
    write_subsets,
)


def _traceable(ann: pd.DataFrame, images_path: Path) -> pd.DataFrame:
    """Add `image_id` (<source stem>:<row>) and `source` unless the rows already carry them."""
    ann = ann.copy()
    if "image_id" not in ann.columns:
        ann["image_id"] = [f"{images_path.stem}:{i}" for i in range(len(ann))]
    if "source" not in ann.columns:
        ann["source"] = str(images_path)
    return ann


def assign_test_split(ann: pd.DataFrame, scheme: LabelScheme, test_frac: float, seed: int,
                      groups: np.ndarray | None = None) -> pd.Series:
    """`split` column: a stratified, seeded `test_frac` of each certain class is `test`, the rest `train`.

    Unsure and unlabeled rows are never test rows, so every model can be scored on the same images.
    With `groups` (one value per row, e.g. a slide) every group lies wholly on one side.
    """
    split = pd.Series("train", index=ann.index, dtype=object)
    if test_frac <= 0:
        return split
    if groups is not None:
        split.iloc[grouped_test_rows(ann, scheme, test_frac, seed, groups)] = "test"
        return split
    rng = np.random.default_rng(seed)
    rounded = round_annotations(ann["annotation"])
    for name in scheme.certain_names:
        rows = np.flatnonzero(rounded == scheme.ann_dict[name])
        n_test = int(round(test_frac * len(rows)))
        chosen = rng.permutation(rows)[:n_test]
        split.iloc[np.sort(chosen)] = "test"
    return split


MAX_TEST_SHARE_MISS = 0.5  # a grouped test split may miss test_frac by half of it, no more


def grouped_test_rows(ann: pd.DataFrame, scheme: LabelScheme, test_frac: float, seed: int,
                      groups: np.ndarray) -> np.ndarray:
    """The certain rows of whole groups chosen as test rows: the fold of a stratified group k-fold
    (k = 1 / test_frac) whose share of the certain rows is nearest test_frac. When no fold comes
    within half of test_frac (a group too large for the test share), that is explained, not hidden."""
    certain = np.flatnonzero(scheme.certain_mask(ann["annotation"]))
    labels = round_annotations(ann["annotation"])[certain]
    groups = np.asarray(groups, dtype=object)[certain]
    n_groups = len(set(groups))
    k = max(2, int(round(1 / test_frac)))
    if n_groups < k:
        raise ValueError(f"the certain images fall in {n_groups} group(s), too few for a test share of "
                         f"{test_frac:g} that keeps groups whole (at least {k} are needed)")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [held for _, held in splitter.split(certain, labels, groups)]
    best = min(folds, key=lambda held: abs(len(held) / len(certain) - test_frac))
    share = len(best) / len(certain)
    if abs(share - test_frac) > MAX_TEST_SHARE_MISS * test_frac:
        sizes = pd.Series(groups).value_counts()
        raise ValueError(f"no set of whole groups makes a test share near {test_frac:g} (closest "
                         f"{share:.2f}); the largest group, {sizes.index[0]!r}, holds {sizes.iloc[0] / len(certain):.0%} "
                         "of the certain images. Use a finer group or another test_frac")
    return np.sort(certain[best])


def check_group_column(columns: Sequence[str], group_by: str, path: str | Path) -> None:
    """A source's annotation columns must hold `group_by`; InputError naming the file otherwise."""
    if group_by not in columns:
        raise InputError(path, f"no column {group_by!r} (group_by): every source needs it to keep groups whole")


def group_values(ann: pd.DataFrame, group_by: str, path: str | Path) -> np.ndarray:
    """The `group_by` column of a source's annotations; a missing column or empty value is an error naming the file."""
    check_group_column(list(ann.columns), group_by, path)
    values = ann[group_by]
    if values.isna().any():
        raise InputError(path, f"column {group_by!r} (group_by) is empty in row {int(np.flatnonzero(values.isna())[0])}")
    return values.astype(str).to_numpy(dtype=object)


def combine(
    sources: Sequence[Pair],
    out: Pair,
    scheme: LabelScheme,
    *,
    test_frac: float | None = None,
    seed: int = 0,
    inputs: Sequence[str] | None = None,
    allow_empty: bool = False,
    overrides: str | Path | None = None,
    group_by: str = "",
) -> pd.DataFrame:
    """Concatenate image sets in order into `out`, streaming; returns the combined annotations.

    Rows keep their source order, extra columns are kept (missing ones left empty), every row
    carries `image_id` and `source`. With `test_frac`, the `split` column is (re)assigned;
    with `inputs` (one tag per source), an `input` column says which input set a row came from.
    `allow_empty` accepts sources with no rows (e.g. a baseline that got nothing wrong).
    `overrides`, a label-override CSV (see data.overrides), is applied after the test split is
    drawn, so corrections never reshuffle the shared test rows. With `group_by` (a column every
    source has, such as a slide) the test split keeps each group whole.
    """
    if not sources:
        raise InputError(out.images, "no sources given to combine")
    if inputs is not None and len(inputs) != len(sources):
        raise ValueError(f"{len(inputs)} input tags for {len(sources)} sources")
    sets = [open_image_set(p, scheme, allow_empty) for p in sources]  # validate everything before any work
    check_compatible(sets)
    for image_set in sets:
        check_pixel_values(image_set)
    groups = (np.concatenate([group_values(s.ann, group_by, s.pair.ann) for s in sets])
              if group_by and test_frac is not None else None)
    parts = [_traceable(s.ann, s.pair.images) for s in sets]
    if inputs is not None:  # which input each row came from, e.g. "unsure" / "wrong parasite"
        parts = [p.assign(**{INPUT: tag}) for p, tag in zip(parts, inputs)]
    ann = pd.concat(parts, ignore_index=True)
    ann.index = pd.RangeIndex(len(ann), name="index")
    duplicated = ann["image_id"].duplicated()
    if duplicated.any():
        raise InputError(sources[0].images, f"image_id {ann['image_id'][duplicated].iloc[0]!r} occurs twice; "
                         "give sources distinct file names")
    if "is_gt" in ann.columns:  # rows without the flag carry ground-truth labels
        ann["is_gt"] = ann["is_gt"].fillna(True).astype(bool)
    ann["split"] = _split_column(ann, scheme, test_frac, seed, groups)
    if overrides is not None and Path(overrides).is_file():
        ann, _ = apply_overrides(ann, overrides, scheme)
        certain = scheme.certain_mask(ann["annotation"])
        ann.loc[(ann["split"] == "test").to_numpy() & ~certain, "split"] = "train"  # test rows are certain images
    first = sets[0].images
    with OutputSet(inputs=[p for pair in sources for p in pair]) as outputs:
        writer = outputs.npy(out.images, (len(ann), *first.shape[1:]), first.dtype)
        for s in sets:
            for _, chunk in iter_chunks(s.images):
                writer.append(chunk)
        outputs.csv(ann, out.ann)
    return ann


def _split_column(ann: pd.DataFrame, scheme: LabelScheme, test_frac: float | None, seed: int,
                  groups: np.ndarray | None) -> pd.Series:
    """The combined set's `split`: drawn afresh with `test_frac`, else the sources' own (train where none)."""
    if test_frac is not None:
        try:
            return assign_test_split(ann, scheme, test_frac, seed, groups)
        except ValueError as exc:
            raise ParameterError("group_by", str(exc)) from None
    return ann["split"].fillna("train") if "split" in ann.columns else pd.Series("train", index=ann.index)


def change_annotation_value(ann: pd.DataFrame, old: float, new: float) -> pd.DataFrame:
    """A copy of `ann` where every annotation equal to `old` becomes `new`."""
    ann = ann.copy()
    hit = np.isclose(ann["annotation"].to_numpy(dtype=float), old)
    ann.loc[hit, "annotation"] = float(new)
    return ann


def split_by_class(combined: Pair, scheme: LabelScheme, out_dir: Path | None = None) -> dict[str, Pair]:
    """Step 02: per-class image sets, unsure relabeled three ways, and certain classes together.

    Writes, beside `combined` (or in `out_dir`): `<stem>_<class>` for every class of the scheme,
    `combined_ann_unsure_as_<target>.csv` (0.8 / 0.2 / -0.8) and
    `<stem>_<positive>_and_<negative>`. Returns the written pairs by suffix.
    """
    source = open_image_set(combined, scheme)
    out_dir = Path(out_dir) if out_dir else combined.images.parent
    rounded = round_annotations(source.ann["annotation"])
    subsets: dict[Pair, np.ndarray] = {}
    written: dict[str, Pair] = {}
    for name, value in scheme.ann_dict.items():
        rows = np.flatnonzero(rounded < 0) if value < 0 else np.flatnonzero(rounded == value)
        if value < 0 and len(rows) == 0:
            continue
        written[name] = suffixed(combined, name, out_dir)
        subsets[written[name]] = rows
    certain = f"{scheme.positive}_and_{scheme.negative}"
    written[certain] = suffixed(combined, certain, out_dir)
    subsets[written[certain]] = np.flatnonzero(scheme.certain_mask(rounded))

    unsure_ann = source.ann.iloc[subsets[written[scheme.unsure]]].reset_index(drop=True)
    with OutputSet(inputs=list(combined)) as outputs:
        write_subsets(source, subsets, outputs)
        for target in scheme.unsure_targets:
            relabeled = change_annotation_value(unsure_ann, scheme.ann_dict[scheme.unsure], scheme.relabeled_unsure_value(target))
            pair = suffixed(combined, f"{scheme.unsure}_as_{target}", out_dir)
            outputs.csv(relabeled.rename_axis("index"), pair.ann)
            written[f"{scheme.unsure}_as_{target}"] = Pair(written[scheme.unsure].images, pair.ann)
    return written


