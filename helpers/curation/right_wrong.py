"""The origin's "wrong" sets: per certain class, the images whose own-class output is below 0.5.

Judged by the final model's outputs (`in_sample`, as the origin did) or by out-of-fold ones.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..core.atomic import OutputSet
from ..core.columns import IN_SAMPLE, score_column, test_mask
from ..core.labels import LabelScheme, round_annotations
from ..data.sets import ImageSet, Pair, write_subsets


def wrong_rows(annotations: np.ndarray, class_scores: np.ndarray, class_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows annotated `class_value` (rounded) and, among them, which the model got wrong: the
    origin's rule is the class's own output (`class_scores`, one per row) below 0.5."""
    rows = np.flatnonzero(round_annotations(annotations) == class_value)
    return rows, np.asarray(class_scores)[rows] < 0.5


def wrong_mask(predictions: pd.DataFrame, class_name: str, class_value: int,
               score_source: str = IN_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """wrong_rows of a predictions file, judged by its in-sample or out-of-fold outputs (`score_source`)."""
    scores = predictions[score_column(class_name, score_source)].to_numpy()
    return wrong_rows(predictions["annotation"].to_numpy(), scores, class_value)


def split_right_wrong(source: ImageSet, predictions: pd.DataFrame, scheme: LabelScheme,
                      out_pair: Callable[[str, str], Pair], *, score_source: str = IN_SAMPLE) -> dict[str, Pair]:
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
        rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], score_source)
        for which, mask in (("wrong", wrong), ("right", ~wrong)):
            pair = out_pair(name, which)
            subsets[pair] = rows[mask]
            annotations[pair] = predictions.iloc[rows[mask]]
            written[f"{name}_{which}"] = pair
    with OutputSet(inputs=list(source.pair)) as outputs:
        write_subsets(source, subsets, outputs, annotations)
    return written


def right_wrong_counts(predictions: pd.DataFrame, scheme: LabelScheme, score_source: str = IN_SAMPLE) -> pd.DataFrame:
    """Per certain class: its images, how many are wrong and right, and how many wrong ones train (not test)."""
    rows = []
    test = test_mask(predictions)
    for name in scheme.certain_names:
        class_rows, wrong = wrong_mask(predictions, name, scheme.ann_dict[name], score_source)
        rows.append({"class": name, "images": len(class_rows), "wrong": int(wrong.sum()), "right": int((~wrong).sum()),
                     "wrong (not test)": int((wrong & ~test[class_rows]).sum())})
    return pd.DataFrame(rows).set_index("class")
