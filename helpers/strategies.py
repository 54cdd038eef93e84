"""The relabeling strategies, as data: adding a strategy is one row of STRATEGIES.

Roles, not class names, so any label scheme works: "positive" (parasite), "negative"
(non-parasite), "unlabeled". Seed 000's six train a differentiator on the unsure images relabeled
as `unsure_as` plus the baseline's wrong images of `wrong_classes`; rows rounding below 0 are not
trained on but are predicted. The others (`method` other than "differentiator", see
helpers.proposals) label the unsures from the SB baseline without training a model.
"""
from __future__ import annotations

from dataclasses import dataclass

from .datasets import Pair
from .errors import ParameterError
from .labels import LabelScheme
from .layout import Layout


@dataclass(frozen=True)
class Strategy:
    name: str
    baseline: str  # whose wrong sets: "s_a" or "s_b"
    unsure_as: str  # "positive" (0.8) or "unlabeled" (-0.8)
    wrong_classes: tuple[str, ...]  # roles of the baseline's wrong sets added
    description: str
    method: str = "differentiator"  # or a proposal method of helpers.proposals: ceal, propagation, two_thresholds

    @property
    def trains_differentiator(self) -> bool:
        return self.method == "differentiator"

    def unsure_target(self, scheme: LabelScheme) -> str:
        return {"positive": scheme.positive, "negative": scheme.negative, "unlabeled": "unlabeled"}[self.unsure_as]

    def wrong_class_names(self, scheme: LabelScheme) -> list[str]:
        return [{"positive": scheme.positive, "negative": scheme.negative}[role] for role in self.wrong_classes]


def _pair(x: int, unsure_as: str, wrong: tuple[str, ...], what: str) -> list[Strategy]:
    return [Strategy(f"s_{x}{y}", f"s_{y}", unsure_as, wrong, f"{what}; wrong sets of S{y.upper()}") for y in "ab"]


STRATEGIES: dict[str, Strategy] = {s.name: s for s in [
    *_pair(1, "positive", ("negative",), "unsure as parasite (0.8) + wrong non-parasite"),
    *_pair(2, "positive", ("negative", "positive"), "unsure as parasite (0.8) + wrong non-parasite + wrong parasite"),
    *_pair(3, "unlabeled", ("negative", "positive"),
           "unsure as unlabeled (-0.8, predicted only) + wrong non-parasite + wrong parasite"),
    Strategy("s_ceal", "s_b", "unlabeled", (), "CEAL (seed 002): unsures with a confident SB prediction "
             "(entropy < delta) take SB's label; the rest stay out", "ceal"),
    Strategy("s_prop", "s_b", "unlabeled", (), "label propagation (seed 004): labels spread from the certain "
             "images over a cosine kNN graph of SB's features", "propagation"),
    Strategy("s_2thr", "s_b", "unlabeled", (), "two thresholds (seed 003) on SB's parasite output: above the upper "
             "parasite, below the lower non-parasite, in between out", "two_thresholds"),
]}
SEED_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.trains_differentiator)


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ParameterError("strategy", f"must be one of {sorted(STRATEGIES)}, got {name!r}")
    return STRATEGIES[name]


def differentiator_inputs(strategy: Strategy, layout: Layout) -> dict[str, Pair]:
    """combine_dict_diff of the seed: origin tag -> image set. The unsure set comes first.
    A proposal strategy reads only the unsures (and SB's model)."""
    scheme = layout.scheme
    if not strategy.trains_differentiator:
        return {"unsure": layout.class_set(scheme.unsure)}
    inputs = {"unsure": layout.unsure_as(strategy.unsure_target(scheme))}
    for name in strategy.wrong_class_names(scheme):
        inputs[f"wrong {name}"] = layout.right_wrong(strategy.baseline, name, "wrong")
    return inputs


def classifier_inputs(strategy: Strategy, layout: Layout, relabel_thresh: float) -> dict[str, Pair]:
    """combine_dict_cl of the seed: the certain images plus the relabeled unsures."""
    scheme = layout.scheme
    return {"certain": layout.certain,
            "relabeled unsure": Pair(layout.class_set(scheme.unsure).images, layout.relabeled(strategy.name, relabel_thresh))}
