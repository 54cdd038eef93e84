"""The strategies, as data: adding a strategy is one row of STRATEGIES.

A strategy is two choices. What happens to the unsures (`method`): the origin's six train a
differentiator on the unsure images relabeled as `unsure_role` plus the baseline's wrong images of
`wrong_classes` (rows rounding below 0 are not trained on but are predicted); the others label the
unsures from the SB baseline without training a model (curation.proposals): CEAL, label
propagation, two thresholds, soft targets (SB's probability as the label), or none at all (left out).
And what happens to the certain images flagged as label issues (`wrong_labels`,
curation.wrong_labels): keep (the origin's six and the proposals), prune, or fix. A strategy may
also name what its final classifier does with the images left without a label (`unlabeled`):
ignore them (predicted, never trained on), train on them by consistency (FixMatch), or co-train two
networks that also divide the labels for each other (DivideMix; helpers.model.cotrain).

Roles, not class names, so any label scheme works: "positive" (parasite), "negative"
(non-parasite), "unlabeled".
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ParameterError
from ..core.labels import LabelScheme
from ..data.layout import Layout
from ..data.sets import Pair
from ..model.settings import UNLABELED_POLICIES
from .wrong_labels import WRONG_LABEL_POLICIES


@dataclass(frozen=True)
class Strategy:
    name: str
    baseline: str  # whose wrong sets: "s_a" or "s_b"
    unsure_role: str  # what the unsures are for the differentiator: "positive" (0.8) or "unlabeled" (-0.8)
    wrong_classes: tuple[str, ...]  # roles of the baseline's wrong sets added
    description: str
    method: str = "differentiator"  # or a proposal method of curation.proposals: ceal, propagation, two_thresholds, soft, exclude
    wrong_labels: str = "keep"  # the flagged certain images: keep, prune or fix (curation.wrong_labels)
    unlabeled: str = "ignore"  # what the final classifier does with the images it has no label for (TrainConfig)

    def __post_init__(self) -> None:
        if self.wrong_labels not in WRONG_LABEL_POLICIES:
            raise ValueError(f"{self.name}: wrong_labels must be one of {WRONG_LABEL_POLICIES}")
        if self.unlabeled not in UNLABELED_POLICIES:
            raise ValueError(f"{self.name}: unlabeled must be one of {UNLABELED_POLICIES}")

    @property
    def trains_differentiator(self) -> bool:
        return self.method == "differentiator"

    def unsure_target(self, scheme: LabelScheme) -> str:
        return {"positive": scheme.positive, "negative": scheme.negative, "unlabeled": "unlabeled"}[self.unsure_role]

    def wrong_class_names(self, scheme: LabelScheme) -> list[str]:
        return [{"positive": scheme.positive, "negative": scheme.negative}[role] for role in self.wrong_classes]


def _pair(x: int, unsure_role: str, wrong: tuple[str, ...], what: str) -> list[Strategy]:
    return [Strategy(f"s_{x}{y}", f"s_{y}", unsure_role, wrong, f"{what}; wrong sets of S{y.upper()}") for y in "ab"]


def _curating(prune: str, fix: str, method: str, unsures: str) -> list[Strategy]:
    return [Strategy(prune, "s_b", "unlabeled", (), f"{unsures}; certain images SB's out-of-fold evidence "
                     "flags as label issues (flag_by: cleanlab or the neighbour vote) pruned from training", method, "prune"),
            Strategy(fix, "s_b", "unlabeled", (), f"{unsures}; flagged wrong labels fixed to SB's out-of-fold "
                     "class where confident (fix_threshold), pruned otherwise", method, "fix")]


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
    Strategy("s_soft", "s_b", "unlabeled", (), "soft targets: each unsure trains towards SB's parasite "
             "probability (the seed's 0.8 / 0.2 idea taken literally)", "soft"),
    *_curating("s_prune", "s_fix", "exclude", "unsures left out (as SB)"),
    *_curating("s_2thr_prune", "s_2thr_fix", "two_thresholds", "unsures by two thresholds (as s_2thr)"),
    Strategy("s_soft_fix", "s_b", "unlabeled", (), "unsures as soft targets (as s_soft); flagged wrong labels "
             "fixed to SB's out-of-fold class where confident, pruned otherwise", "soft", "fix"),
    Strategy("s_fix_cons", "s_b", "unlabeled", (), "as s_fix, and the images it leaves unlabeled (unsures, pruned "
             "labels) train by consistency: a strongly augmented view learns the weak view's confident class "
             "(FixMatch)", "exclude", "fix", "consistency"),
    Strategy("s_cotrain", "s_b", "unlabeled", (), "co-training (DivideMix): the flagged labels pruned and the unsures "
             "left out become unlabeled images; two networks divide the labels for each other every epoch by a "
             "mixture of their losses, learn the doubted and unlabeled images from their shared guess, and predict "
             "together", "exclude", "prune", "cotrain"),
]}
SEED_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.trains_differentiator)
# What a run compares unless told otherwise: the strategies that existed before soft targets and
# wrong-label curation (which need 03's out-of-fold label issues), so the default run is unchanged.
DEFAULT_STRATEGIES = (*SEED_STRATEGIES, "s_ceal", "s_prop", "s_2thr")


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
    """The origin's combine_dict_cl: the certain images (as curated, when the strategy prunes or fixes
    wrong labels) plus the relabeled unsures."""
    scheme = layout.scheme
    certain = layout.curated_certain(strategy.name) if strategy.wrong_labels != "keep" else layout.certain
    return {"certain": certain,
            "relabeled unsure": Pair(layout.class_set(scheme.unsure).images, layout.relabeled(strategy.name, relabel_thresh))}
