"""The origin's "wrong" sets: per certain class, the images whose own-class output is below 0.5.

Judged by the final model's outputs (`in_sample`, as the origin did) or by out-of-fold ones.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..core.columns import score_column
from ..core.io import OutputSet
from ..core.labels import LabelScheme, round_annotations
from ..data.sets import ImageSet, Pair, write_subsets


def wrong_mask(predictions: pd.DataFrame, class_name: str, class_value: int,
               wrong_from: str = "in_sample") -> tuple[np.ndarray, np.ndarray]:
    """Rows of class `class_name` (rounded annotation) and, among them, which the model got wrong:
    the origin's rule is own-class output < 0.5 (in-sample, or out-of-fold with `wrong_from`)."""
    rows = np.flatnonzero(round_annotations(predictions["annotation"]) == class_value)
    own = predictions[score_column(class_name, wrong_from)].to_numpy()[rows]
    return rows, own < 0.5


def split_right_wrong(source: ImageSet, predictions: pd.DataFrame, scheme: LabelScheme,
                      out_pair: Callable[[str, str], Pair], wrong_from: str = "in_sample") -> dict[str, Pair]:
    """Per certain class, `<class>_wrong` and `<class>_right` image sets (one pass).

    `out_pair(class_name, which)` gives the output pair; rows keep every column of the
    predictions (image_id, split, outputs), so each image stays traceable.
    """
    if len(predictions) != len(source):
        raise ValueError(f"{source.pair.images}: {len(source)} images but {len(predictions)} predictions")
    subsets: dict[Pair, np.ndarray] = {}
    annotations: dict[Pair, pd.DataFrame] = {}
    written: dict[str, Pair] = {}
    for name in scheme.certain_names:
        rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], wrong_from)
        for which, mask in (("wrong", wrong), ("right", ~wrong)):
            pair = out_pair(name, which)
            subsets[pair] = rows[mask]
            annotations[pair] = predictions.iloc[rows[mask]]
            written[f"{name}_{which}"] = pair
    with OutputSet(inputs=list(source.pair)) as outputs:
        write_subsets(source, subsets, outputs, annotations)
    return written


def right_wrong_counts(predictions: pd.DataFrame, scheme: LabelScheme, wrong_from: str = "in_sample") -> pd.DataFrame:
    rows = []
    for name in scheme.certain_names:
        class_rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], wrong_from)
        split = predictions["split"].to_numpy()[class_rows] if "split" in predictions.columns else None
        rows.append({"class": name, "images": len(class_rows), "wrong": int(wrong.sum()), "right": int((~wrong).sum()),
                     "wrong (not test)": int((wrong & (split != "test")).sum()) if split is not None else int(wrong.sum())})
    return pd.DataFrame(rows).set_index("class")
