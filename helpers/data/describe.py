"""Tables and samples that describe image sets, for the notebooks and metrics.json."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.columns import test_mask
from ..core.labels import LabelScheme, round_annotations
from .sets import ImageSet, Pair, check_compatible, open_image_set, read_annotations


def class_counts(ann: pd.DataFrame, scheme: LabelScheme, by: str | None = None) -> pd.DataFrame:
    """Number of images per class (rounded annotation), optionally per value of column `by`."""
    names = pd.Series(scheme.class_names(ann["annotation"]))
    order = [n for n in scheme.names if n in set(names)] + sorted(set(names) - set(scheme.names))
    frame = pd.DataFrame({"class": pd.Categorical(names.to_numpy(), categories=order)})
    if by is None:
        return frame.value_counts("class", sort=False).rename("images").to_frame()
    frame[by] = ann[by].to_numpy()
    return frame.groupby([by, "class"], observed=False, sort=False).size().unstack(fill_value=0)


def describe_sets(sets: Mapping[str, Pair] | Sequence[Pair], scheme: LabelScheme, allow_empty: bool = False,
                  compatible: bool = False) -> pd.DataFrame:
    """Validate image sets and summarise each (rows, shape, dtype, classes, test rows); raises on the
    first bad one. A list is named by file stem; `compatible` also requires one shape and dtype."""
    named = sets if isinstance(sets, Mapping) else {p.images.stem: p for p in sets}
    opened = {name: open_image_set(pair, scheme, allow_empty) for name, pair in named.items()}
    if compatible:
        check_compatible(list(opened.values()))
    rows = []
    for name, s in opened.items():
        counts = pd.Series(scheme.class_names(s.ann["annotation"])).value_counts()
        rows.append({"set": name, "images": str(s.pair.images), "rows": len(s), "shape": "x".join(map(str, s.image_shape)),
                     "dtype": str(s.images.dtype), **counts.to_dict(),
                     "test rows": int(test_mask(s.ann).sum())})
    table = pd.DataFrame(rows).set_index("set")
    classes = [n for n in scheme.names if n in table.columns]
    table[classes] = table[classes].fillna(0).astype(int)
    return table


def examples_per_class(image_set: ImageSet, scheme: LabelScheme, k: int, seed: int) -> dict[str, np.ndarray]:
    """Up to k images of each class (rounded annotation), drawn reproducibly."""
    rng = np.random.default_rng(seed)
    rounded = round_annotations(image_set.ann["annotation"])
    out = {}
    for value in sorted(set(rounded.tolist())):
        rows = np.flatnonzero(rounded == value)
        chosen = np.sort(rng.choice(rows, size=min(k, len(rows)), replace=False))
        out[scheme.name_of(value)] = np.asarray(image_set.images[chosen])
    return out


def summarize(ann: pd.DataFrame, scheme: LabelScheme) -> dict:
    """Counts for metrics.json: rows, per class, per split, per class and split."""
    names = pd.Series(scheme.class_names(ann["annotation"]))
    split = ann["split"] if "split" in ann.columns else pd.Series("train", index=ann.index)
    by_both = pd.crosstab(names.to_numpy(), split.to_numpy())
    return {
        "rows": int(len(ann)),
        "per_class": {k: int(v) for k, v in names.value_counts().items()},
        "per_split": {k: int(v) for k, v in split.value_counts().items()},
        "per_class_and_split": {c: {s: int(by_both.loc[c, s]) for s in by_both.columns} for c in by_both.index},
    }


def describe_outputs(written: Mapping[str, Pair]) -> pd.DataFrame:
    """One row per written set: files, rows, annotation values, test rows."""
    rows = []
    for name, pair in written.items():
        ann = read_annotations(pair.ann)
        values = sorted(set(np.round(ann["annotation"].to_numpy(), 3).tolist()))
        rows.append({"set": name, "images": pair.images.name, "annotations": pair.ann.name, "rows": len(ann),
                     "annotation values": values,
                     "test rows": int(test_mask(ann).sum())})
    return pd.DataFrame(rows).set_index("set")
