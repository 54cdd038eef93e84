import numpy as np
import pytest

from helpers.core.errors import ParameterError
from helpers.core.labels import LabelScheme, round_annotations


def test_default_scheme_roles(scheme):
    assert (scheme.positive, scheme.negative, scheme.unsure) == ("parasite", "non-parasite", "unsure")
    assert scheme.certain_names == ["non-parasite", "parasite"]
    assert scheme.trainable_values == [0, 1, 2]


def test_any_class_names_work_by_value():
    s = LabelScheme.from_dict({"healthy": 0, "infected": 1, "maybe": 2})
    assert (s.positive, s.negative, s.unsure) == ("infected", "healthy", "maybe")
    assert s.relabeled_unsure_value("infected") == 0.8 and s.relabeled_unsure_value("healthy") == 0.2 and s.relabeled_unsure_value("unlabeled") == -0.8


def test_provenance_values_round_to_their_target():
    assert round_annotations([0.8, 0.2, -0.8, 2.0, 1.0]).tolist() == [1, 0, -1, 2, 1]


@pytest.mark.parametrize("bad", [{}, {"a": 0, "b": 1}, {"a": 0, "b": 1, "c": 2, "d": 2}, {"a": 0, "b": 1.5, "c": 2},
                                 {"a": 0, "b": 1, "c": 2, "x": -1, "y": -2}, "parasite"])
def test_malformed_ann_dict_is_rejected(bad):
    with pytest.raises(ParameterError, match="ann_dict"):
        LabelScheme.from_dict(bad)


def test_invalid_mask_flags_nan_and_values_outside_scheme(scheme):
    mask = scheme.invalid_mask([0, 1, 2, -1, 0.8, -0.8, np.nan, 3, 7.2, np.inf])
    assert mask.tolist() == [False] * 6 + [True] * 4
