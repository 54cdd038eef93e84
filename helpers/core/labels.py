"""The label scheme: class names <-> annotation values, the rounding rule, unsure provenance values.

Roles are fixed by value so that any class names work: 0 is the negative class, 1 the positive
class, 2 the unsure class and negative values are unlabeled. Fractional annotations keep the
provenance of a relabeled unsure: 0.8 (unsure as positive), 0.2 (as negative), -0.8 (unlabeled).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .checks import is_number
from .errors import ParameterError

DEFAULT_ANN_DICT: dict[str, int] = {"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1}
NEGATIVE_VALUE, POSITIVE_VALUE, UNSURE_VALUE = 0, 1, 2

# The annotation an unsure image gets when relabeled, by target value: the fraction keeps its provenance.
RELABELED_UNSURE_VALUES: dict[int, float] = {POSITIVE_VALUE: 0.8, NEGATIVE_VALUE: 0.2, -1: -0.8}
EXCLUDED_UNSURE_VALUE = RELABELED_UNSURE_VALUES[-1]  # -0.8: kept out of training, still predicted


def round_annotations(values) -> np.ndarray:
    """The training label of each annotation: round half to even, as an int array."""
    return np.rint(np.asarray(values, dtype=float)).astype(np.int64)


@dataclass(frozen=True)
class LabelScheme:
    ann_dict: Mapping[str, int]

    @classmethod
    def from_dict(cls, ann_dict: Mapping[str, float]) -> "LabelScheme":
        if not isinstance(ann_dict, Mapping) or not ann_dict:
            raise ParameterError("ann_dict", "must be a non-empty dict of class name -> integer value")
        clean: dict[str, int] = {}
        for name, value in ann_dict.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ParameterError("ann_dict", f"class name {name!r} must be a non-empty string without '/'")
            if not is_number(value) or float(value) != int(value):
                raise ParameterError("ann_dict", f"value of {name!r} must be an integer, got {value!r}")
            clean[name] = int(value)
        values = list(clean.values())
        if len(set(values)) != len(values):
            raise ParameterError("ann_dict", f"values must be unique, got {clean}")
        for role, value in (("negative", NEGATIVE_VALUE), ("positive", POSITIVE_VALUE), ("unsure", UNSURE_VALUE)):
            if value not in values:
                raise ParameterError("ann_dict", f"needs a {role} class with value {value}, got {clean}")
        if sum(v < 0 for v in values) > 1:
            raise ParameterError("ann_dict", f"at most one unlabeled (negative) value, got {clean}")
        return cls(clean)

    @property
    def names(self) -> list[str]:
        return list(self.ann_dict)

    def name_of(self, value: int) -> str:
        for name, v in self.ann_dict.items():
            if v == value:
                return name
        return "unlabeled" if value < 0 else str(value)

    @property
    def positive(self) -> str:
        return self.name_of(POSITIVE_VALUE)

    @property
    def negative(self) -> str:
        return self.name_of(NEGATIVE_VALUE)

    @property
    def unsure(self) -> str:
        return self.name_of(UNSURE_VALUE)

    @property
    def unlabeled_value(self) -> int:
        return next((v for v in self.ann_dict.values() if v < 0), -1)

    @property
    def certain_names(self) -> list[str]:
        """Trainable classes other than the unsure one, by value."""
        return [self.name_of(v) for v in self.certain_values]

    @property
    def certain_values(self) -> list[int]:
        """Values of the certain classes (trainable, not the unsure one), ascending."""
        return [v for v in sorted(self.ann_dict.values()) if v >= 0 and v != UNSURE_VALUE]

    def certain_mask(self, annotations) -> np.ndarray:
        """True where an annotation rounds to a certain class (not unsure, relabeled into one, or unlabeled)."""
        return np.isin(round_annotations(annotations), self.certain_values)

    @property
    def trainable_values(self) -> list[int]:
        return sorted(v for v in self.ann_dict.values() if v >= 0)

    def class_names(self, annotations) -> np.ndarray:
        """The class name of each annotation (by its rounded value)."""
        return np.array([self.name_of(v) for v in round_annotations(annotations)], dtype=object)

    def invalid_mask(self, annotations) -> np.ndarray:
        """True where an annotation is not finite or does not round to a value of the scheme.

        Any negative value is accepted as "unlabeled" (not trained on, still predicted).
        """
        a = np.asarray(annotations, dtype=float)
        finite = np.isfinite(a)
        rounded = np.where(finite, np.rint(np.where(finite, a, 0)), 0).astype(np.int64)
        allowed = np.isin(rounded, self.trainable_values) | (rounded < 0)
        return ~finite | ~allowed

    def relabeled_unsure_value(self, target: str) -> float:
        """Annotation value for an unsure image relabeled as `target` (positive, negative, unlabeled name)."""
        if target == self.positive:
            return RELABELED_UNSURE_VALUES[POSITIVE_VALUE]
        if target == self.negative:
            return RELABELED_UNSURE_VALUES[NEGATIVE_VALUE]
        if target == self.name_of(self.unlabeled_value) or target == "unlabeled":
            return RELABELED_UNSURE_VALUES[-1]
        raise ParameterError("target", f"unsure can be relabeled as {self.positive!r}, {self.negative!r} or unlabeled, not {target!r}")

    @property
    def unsure_targets(self) -> list[str]:
        return [self.positive, self.negative, self.name_of(self.unlabeled_value) if self.unlabeled_value in self.ann_dict.values() else "unlabeled"]
