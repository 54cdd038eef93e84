"""What a strategy changed, image by image: worked out by hand on five certain images and three unsures."""
import numpy as np
import pandas as pd

from helpers.curation.gallery import change_caption, curation_changes


def test_changes_by_kind_surest_first_with_whether_each_was_right(scheme):
    curated = pd.DataFrame({"image_id": [f"c{i}" for i in range(5)], "annotation": [1.0, -1.0, 0.0, -1.0, 1.0],
                            "original_annotation": [1.0, 0.0, 1.0, 1.0, 0.0],
                            "label_action": ["kept", "pruned", "fixed", "pruned", "fixed"],
                            "action_confidence": [np.nan, 0.7, 0.9, 0.95, 0.85]})
    relabeled = pd.DataFrame({"image_id": ["u0", "u1", "u2"], "annotation": [1.0, 0.0, -0.8],
                              "relabel_score": [0.95, 0.02, 0.5]})
    truth = pd.DataFrame({"image_id": ["c1", "c2", "c3", "c4", "u0", "u1"],
                          "truth": ["parasite", "non-parasite", "parasite", "non-parasite", "parasite", "parasite"]})
    changes = curation_changes(curated, relabeled, scheme, truth)
    pruned, fixed, unsures = changes["pruned"], changes["fixed"], changes["relabeled"]
    assert pruned["image_id"].tolist() == ["c3", "c1"]  # surest first
    assert pruned["right"].tolist() == [False, True]  # c3's given label was its true class; c1's was not
    assert fixed["image_id"].tolist() == ["c2", "c4"] and fixed["right"].tolist() == [True, False]
    assert unsures["image_id"].tolist() == ["u1", "u0"]  # u2 stays out of training: no change
    assert unsures["confidence"].tolist() == [0.98, 0.95] and unsures["right"].tolist() == [False, True]
    assert list(pruned.index) == [3, 1]  # positions in the curated set: its image rows
    assert change_caption(fixed.iloc[0]) == "parasite -> non-parasite 0.90\ntruth non-parasite right"


def test_without_the_truth_or_a_curation_the_kinds_it_did_not_make_are_absent(scheme):
    relabeled = pd.DataFrame({"image_id": ["u0"], "annotation": [-0.8], "relabel_score": [0.5]})
    assert curation_changes(None, relabeled, scheme) == {}
    kept = pd.DataFrame({"image_id": ["c0"], "annotation": [1.0], "original_annotation": [1.0], "label_action": ["kept"]})
    changes = curation_changes(kept, pd.DataFrame({"image_id": ["u0"], "annotation": [1.0], "relabel_score": [0.99]}),
                               scheme)
    assert list(changes) == ["relabeled"] and changes["relabeled"]["right"].tolist() == [None]
    assert change_caption(changes["relabeled"].iloc[0]) == "unsure -> parasite 0.99"
