"""The hidden truth of demo and benchmark data: `truth.csv` with the true class of every image_id
(and which labels were flipped). The pipeline never decides anything by it; the oracle trains on
it and the comparison scores against it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.files import read_csv_file
from ..core.labels import POSITIVE_VALUE, round_annotations
from ..core.paths import resolve
from .layout import Layout
from .sets import read_annotations


def truth_lookup(truth: pd.DataFrame, image_ids, column: str = "truth") -> np.ndarray:
    """The truth file's `column` (the true class, or `label_flipped`) for each image id, in order;
    NaN where the truth does not know the image."""
    return truth.set_index("image_id")[column].reindex(np.asarray(image_ids)).to_numpy()


MIN_TRUTH_AGREEMENT = 0.9  # of the labels a truth file says were not flipped; another data set's file agrees ~50%


def read_truth(path: str, layout: Layout) -> pd.DataFrame | None:
    """The hidden truth of the combined images (demo data), None when `path` is ''. A truth file
    that is missing, lacks an image, or describes other images is an error naming it."""
    if not path:
        return None
    resolved = Path(resolve(path))
    truth = read_csv_file(resolved, missing="truth file not found (truth_path; '' for none)")
    missing_columns = {"image_id", "truth"} - set(truth.columns)
    if missing_columns:
        raise InputError(resolved, f"not a truth file: missing columns {sorted(missing_columns)}")
    ann = read_annotations(layout.combined.ann)
    known = ann["image_id"].isin(truth["image_id"])
    if not known.all():
        raise InputError(resolved, f"covers {int(known.sum())} of the {len(ann)} images of {layout.combined.ann} "
                                   f"(first missing: {ann['image_id'][~known].iloc[0]}); it belongs to other data")
    if "label_flipped" in truth.columns:
        values = round_annotations(ann["annotation"])
        flipped = truth_lookup(truth, ann["image_id"], "label_flipped").astype(bool)
        kept = layout.scheme.certain_mask(values) & ~flipped
        given = np.where(values[kept] == POSITIVE_VALUE, layout.scheme.positive, layout.scheme.negative)
        agreement = float((given == truth_lookup(truth, ann["image_id"])[kept]).mean()) if kept.any() else 1.0
        if agreement < MIN_TRUTH_AGREEMENT:
            raise InputError(resolved, f"describes other images: only {agreement:.0%} of the labels it says were kept "
                                       f"agree with {layout.combined.ann}")
    return truth
