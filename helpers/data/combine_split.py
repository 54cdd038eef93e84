"""Combine labelled sources into one image set, and split it by class (the pipeline's steps 01 and 02)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.atomic import OutputSet
from ..core.columns import INPUT
from ..core.errors import InputError
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


def assign_test_split(ann: pd.DataFrame, scheme: LabelScheme, test_frac: float, seed: int) -> pd.Series:
    """`split` column: a stratified, seeded `test_frac` of each certain class is `test`, the rest `train`.

    Unsure and unlabeled rows are never test rows, so every model can be scored on the same images.
    """
    split = pd.Series("train", index=ann.index, dtype=object)
    if test_frac <= 0:
        return split
    rng = np.random.default_rng(seed)
    rounded = round_annotations(ann["annotation"])
    for name in scheme.certain_names:
        rows = np.flatnonzero(rounded == scheme.ann_dict[name])
        n_test = int(round(test_frac * len(rows)))
        chosen = rng.permutation(rows)[:n_test]
        split.iloc[np.sort(chosen)] = "test"
    return split


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
) -> pd.DataFrame:
    """Concatenate image sets in order into `out`, streaming; returns the combined annotations.

    Rows keep their source order, extra columns are kept (missing ones left empty), every row
    carries `image_id` and `source`. With `test_frac`, the `split` column is (re)assigned;
    with `inputs` (one tag per source), an `input` column says which input set a row came from.
    `allow_empty` accepts sources with no rows (e.g. a baseline that got nothing wrong).
    `overrides`, a label-override CSV (see data.overrides), is applied after the test split is
    drawn, so corrections never reshuffle the shared test rows.
    """
    if not sources:
        raise InputError(out.images, "no sources given to combine")
    if inputs is not None and len(inputs) != len(sources):
        raise ValueError(f"{len(inputs)} input tags for {len(sources)} sources")
    sets = [open_image_set(p, scheme, allow_empty) for p in sources]  # validate everything before any work
    check_compatible(sets)
    for image_set in sets:
        check_pixel_values(image_set)
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
    if test_frac is not None:
        ann["split"] = assign_test_split(ann, scheme, test_frac, seed)
    elif "split" in ann.columns:
        ann["split"] = ann["split"].fillna("train")
    else:
        ann["split"] = "train"
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


