"""The clean-label oracle: the same recipe trained on the true class of every non-test image (the
unsures included), from the demo's hidden truth. It is the accuracy a perfect curation could reach;
runs are judged by the share of the SB-to-oracle gap they close. Never a candidate for the verdict."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.atomic import OutputSet
from ..core.columns import test_mask
from ..data.layout import Layout
from ..data.sets import Pair, read_annotations
from ..data.truth import truth_lookup

ORACLE = "s_oracle"


def oracle_pair(layout: Layout, truth: pd.DataFrame) -> Pair:
    """The combined images with every non-test annotation replaced by its true class (test rows keep
    theirs: every run is scored on the same test labels), written to the oracle's run folder."""
    ann = read_annotations(layout.combined.ann)
    true_class = truth_lookup(truth, ann["image_id"])
    scheme = layout.scheme
    true_value = np.where(true_class == scheme.positive, scheme.ann_dict[scheme.positive],
                          scheme.ann_dict[scheme.negative]).astype(float)
    test = test_mask(ann)
    ann["annotation"] = np.where(test, ann["annotation"], true_value)
    pair = Pair(layout.combined.images, layout.run_dir(ORACLE) / "combined_ann_oracle.csv")
    with OutputSet() as out:
        out.csv(ann, pair.ann)
    return pair
