"""05's report, section by section: each shows only where it applies to the strategy (a strategy that
keeps the given labels has no wrong-label section, one that leaves the unsures out no relabeling),
and the gallery page of the images the strategy's curation changed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from .. import plots
from ..curation.gallery import change_caption, change_summary, curation_changes
from ..curation.strategies import Strategy
from ..data.sets import open_images
from ..data.truth import read_truth
from .config import Config
from .outcome import Outcome
from .reports import write_gallery
from .steps import relabel_counts, round_counts

GALLERY_PAGE = 48  # images shown per kind of change, the surest first


def wrong_labels(strategy: Strategy, curated: Outcome) -> None:
    """The flagged certain images pruned or fixed, per round; nothing for a strategy that keeps the labels."""
    if strategy.wrong_labels == "keep":
        return
    treated = ("pruned from training" if strategy.wrong_labels == "prune" else
               "fixed to the suggested class where it is at least `fix_threshold` sure, pruned otherwise")
    display(Markdown(f"## Wrong labels\nThe certain images SB's out-of-fold evidence flags (`flag_by`) are {treated}. "
                     "Test rows are never touched. With `rounds` > 1 the curated labels go through the "
                     "flagging again, until the issue list stops shrinking."), round_counts(curated))


def relabeled_unsures(strategy: Strategy, relabeled: Outcome, cfg: Config) -> None:
    """How the unsures were relabeled (and, for a differentiator, how the split moves with the
    threshold); nothing for a strategy that leaves them out of training."""
    if strategy.method == "exclude":
        return
    how = (f"by the differentiator's {cfg.scheme.positive} output: above `relabel_thresh` "
           f"({cfg.relabel_thresh:g}) {cfg.scheme.positive}, else {cfg.scheme.negative}"
           if strategy.trains_differentiator else f"as 04 proposed them ({strategy.method}; `relabel_thresh` is not used)")
    display(Markdown(f"## Relabel the unsures\nThe unsure images take a label {how}; each is a pseudo-label "
                     "(`is_gt` False)."), relabel_counts(relabeled, cfg.scheme))
    if strategy.trains_differentiator and relabeled.applies:
        display(Markdown("How the split would change with the threshold:"), relabeled.figure("relabel_sweep"))


@dataclass
class Gallery:
    """The gallery page 05 wrote and the counts of what changed; shows as its link and counts."""
    path: Path
    strategy: str
    summary: pd.DataFrame  # per kind of change: images, and the share right by the truth
    with_truth: bool

    def _repr_html_(self) -> str:
        counts = self.summary.to_html() if len(self.summary) else "<p>This strategy changed no label.</p>"
        checked = ", checked against the truth" if self.with_truth else ""
        return (f'<p><a href="{self.path.name}">Gallery of what {self.strategy} changed</a> (a page each kind, the '
                f"surest first{checked}).</p>{counts}")

    def metrics(self) -> dict[str, Any]:
        """For 05's metrics.json: the page (the index links it) and the counts."""
        return {"gallery": str(self.path), "changed": self.summary.to_dict(orient="index")}


def curation_gallery(strategy: Strategy, cfg: Config, curated: Outcome, relabeled: Outcome) -> Gallery:
    """Write the gallery of what the strategy changed (`layout.gallery`): per kind (pruned, fixed,
    relabeled) the surest changes with the given and the new label, and with `truth_path` the true
    class and whether the change was right."""
    layout, scheme = cfg.layout, cfg.scheme
    truth = read_truth(cfg.truth_path, layout)
    changes = curation_changes(curated.table if curated.applies else None,
                               relabeled.table if relabeled.applies else None, scheme, truth)
    images = {"relabeled": layout.class_set(scheme.unsure).images}
    sections = []
    for kind, frame in changes.items():
        shown = frame.head(GALLERY_PAGE)
        array = open_images(images.get(kind, layout.certain.images))
        text = f"{len(frame)} images {kind}; the {len(shown)} surest first" + _right_share(frame)
        sections.append((kind.capitalize(), text, plots.labelled_grid(
            array[shown.index.to_numpy()], [change_caption(row) for _, row in shown.iterrows()], n_cols=8)))
    flags = f" Flags: {cfg.flag_by}." if strategy.wrong_labels != "keep" else ""
    intro = (f"{strategy.name}: {strategy.description}.{flags} Each image shows its given label -> the new one and how "
             "sure the change was" + (", then its true class and whether the change was right." if truth is not None
                                      else "."))
    path = write_gallery(layout.gallery(strategy.name), f"What {strategy.name} changed", intro, sections)
    return Gallery(path, strategy.name, change_summary(changes), truth is not None)


def _right_share(frame: pd.DataFrame) -> str:
    known = frame["right"].dropna()
    return f"; {known.astype(bool).mean():.0%} of them right by the truth" if len(known) else ""
