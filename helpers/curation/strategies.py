"""The relabeling strategies, as data: adding a strategy is one row of STRATEGIES.

Roles, not class names, so any label scheme works: "positive" (parasite), "negative"
(non-parasite), "unlabeled". The origin's six train a differentiator on the unsure images relabeled
as `unsure_role` plus the baseline's wrong images of `wrong_classes`; rows rounding below 0 are not
trained on but are predicted. The others (`method` other than "differentiator", see
curation.proposals) label the unsures from the SB baseline without training a model: CEAL, label
propagation and two thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ParameterError
from ..core.labels import LabelScheme
from ..data.layout import Layout
from ..data.sets import Pair


@dataclass(frozen=True)
class Strategy:
    name: str
    baseline: str  # whose wrong sets: "s_a" or "s_b"
    unsure_role: str  # what the unsures are for the differentiator: "positive" (0.8) or "unlabeled" (-0.8)
    wrong_classes: tuple[str, ...]  # roles of the baseline's wrong sets added
    description: str
    method: str = "differentiator"  # or a proposal method of curation.proposals: ceal, propagation, two_thresholds

    @property
    def trains_differentiator(self) -> bool:
        return self.method == "differentiator"

    def unsure_target(self, scheme: LabelScheme) -> str:
        return {"positive": scheme.positive, "negative": scheme.negative, "unlabeled": "unlabeled"}[self.unsure_role]

    def wrong_class_names(self, scheme: LabelScheme) -> list[str]:
        return [{"positive": scheme.positive, "negative": scheme.negative}[role] for role in self.wrong_classes]


def _pair(x: int, unsure_role: str, wrong: tuple[str, ...], what: str) -> list[Strategy]:
    return [Strategy(f"s_{x}{y}", f"s_{y}", unsure_role, wrong, f"{what}; wrong sets of S{y.upper()}") for y in "ab"]


STRATEGIES: dict[str, Strategy] = {s.name: s for s in [
    *_pair(1, "positive", ("negative",), "unsure as parasite (0.8) + wrong non-parasite"),
    *_pair(2, "positive", ("negative", "positive"), "unsure as parasite (0.8) + wrong non-parasite + wrong parasite"),
    *_pair(3, "unlabeled", ("negative", "positive"),
           "unsure as unlabeled (-0.8, predicted only) + wrong non-parasite + wrong parasite"),
    Strategy("s_ceal", "s_b", "unlabeled", (), "CEAL: unsures with a confident SB prediction "
             "(entropy < delta) take SB's label; the rest stay out", "ceal"),
    Strategy("s_prop", "s_b", "unlabeled", (), "label propagation: labels spread from the certain "
             "images over a cosine kNN graph of SB's features", "propagation"),
    Strategy("s_2thr", "s_b", "unlabeled", (), "two thresholds on SB's parasite output: above the upper "
             "parasite, below the lower non-parasite, in between out", "two_thresholds"),
]}
SEED_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.trains_differentiator)


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ParameterError("strategy", f"must be one of {sorted(STRATEGIES)}, got {name!r}")
    return STRATEGIES[name]


def differentiator_inputs(strategy: Strategy, layout: Layout) -> dict[str, Pair]:
    """The origin's combine_dict_diff: input tag -> image set. The unsure set comes first.
    A proposal strategy reads only the unsures (and SB's model)."""
    scheme = layout.scheme
    if not strategy.trains_differentiator:
        return {"unsure": layout.class_set(scheme.unsure)}
    inputs = {"unsure": layout.unsure_relabeled(strategy.unsure_target(scheme))}
    for name in strategy.wrong_class_names(scheme):
        inputs[f"wrong {name}"] = layout.right_wrong(strategy.baseline, name, "wrong")
    return inputs


def classifier_inputs(strategy: Strategy, layout: Layout, relabel_thresh: float) -> dict[str, Pair]:
    """The origin's combine_dict_cl: the certain images plus the relabeled unsures."""
    scheme = layout.scheme
    return {"certain": layout.certain,
            "relabeled unsure": Pair(layout.class_set(scheme.unsure).images, layout.relabeled(strategy.name, relabel_thresh))}
