"""Column names and flag values shared by every step's CSV files.

- `<class> output`: a model's softmax output for a class (in-sample for the rows it trained on).
- `<class> out-of-fold`: the output of a fold model that never saw the row.
- `proposed_annotation`: the label a proposal strategy gives an unsure image.
- `input`: in a set built from several inputs (04's `_diff`, 05's `_cl`), the input a row came from.
- `exclude` / `validation`: flags a reviewer sets; excluded rows never train, validation rows always validate.
- `soft_target`: the positive class's probability a row trains towards instead of its hard label.
- `label_action` / `original_annotation`: what curation did to a certain image's label (kept,
  pruned or fixed) and the label it had before.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError

# Which outputs judge a row: the model's own (in-sample: it may have trained on the row) or a fold
# model's that never saw it (out-of-fold). Decides which images are "wrong" and what cleanlab reads.
IN_SAMPLE, OUT_OF_FOLD = "in_sample", "out_of_fold"
WRONG_FROM = (IN_SAMPLE, OUT_OF_FOLD)
# What 07 reviews: a run's predictions (''), or the test rows in 06's review queue, whose labels
# become verified test labels.
TEST_QUEUE = "test"
REVIEW_QUEUES = ("", TEST_QUEUE)
PROPOSED = "proposed_annotation"
INPUT = "input"  # in a set built from several inputs (04, 05): which input set a row came from
SOFT_TARGET = "soft_target"
LABEL_ACTION, ORIGINAL_ANNOTATION = "label_action", "original_annotation"
# how sure the flag behind a row's label action was: the suggested class's out-of-fold output, or the
# share of the image's neighbours that carry it (curation galleries show the surest first)
ACTION_CONFIDENCE = "action_confidence"
OUTPUT_SUFFIX = " output"


def output_column(class_name: str) -> str:
    return f"{class_name}{OUTPUT_SUFFIX}"


def oof_column(class_name: str) -> str:
    """A class's out-of-fold output (deliberately not ending in ' output', which marks the in-sample ones)."""
    return f"{class_name} out-of-fold"


def score_column(class_name: str, source: str) -> str:
    """A class's output from a score source: the final model's (in_sample, as the origin did) or the out-of-fold one."""
    return output_column(class_name) if source == IN_SAMPLE else oof_column(class_name)


def output_columns(predictions: pd.DataFrame) -> list[str]:
    return [c for c in predictions.columns if c.endswith(OUTPUT_SUFFIX)]


def output_probabilities(predictions: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The `<class> output` columns as an (N, classes) array, and the class names in that order."""
    columns = output_columns(predictions)
    if not columns:
        raise InputError("predictions", "no '<class> output' columns: not an ann_with_predictions file")
    return predictions[columns].to_numpy(dtype=float), [c[: -len(OUTPUT_SUFFIX)] for c in columns]


FLAG_WORDS = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}  # lower case


def flag_values(values: pd.Series) -> np.ndarray:
    """Boolean flags as read back from CSV (True/False, 1/0, "true"/"false")."""
    return values.astype(str).str.lower().isin([word for word, flag in FLAG_WORDS.items() if flag]).to_numpy()


def test_mask(ann: pd.DataFrame) -> np.ndarray:
    """True on the rows of the shared test split (none when there is no `split` column)."""
    if "split" not in ann.columns:
        return np.zeros(len(ann), bool)
    return (ann["split"].astype(str) == "test").to_numpy()


def flag_column(ann: pd.DataFrame, column: str) -> np.ndarray:
    """A boolean column such as `exclude` or `validation`; all False when absent."""
    return flag_values(ann[column]) if column in ann.columns else np.zeros(len(ann), bool)
