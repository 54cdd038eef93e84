"""The data steps of a strategy run (notebooks 04 and 05): build the differentiator's set, relabel
the unsures, build the final classifier's set. Each passes a SkippedRun through unchanged, so a
strategy that cannot apply says why in every cell and the rest of the run goes on."""
from __future__ import annotations

import pandas as pd

from .datasets import Pair, combine, read_annotations
from .experiment import SkippedRun, read_step_status
from .io import OutputSet
from .labels import LabelScheme
from .layout import Layout
from .relabel import relabel_unsure
from .strategies import Strategy


def step_name(notebook: str, strategy: str) -> str:
    return f"{notebook}_{strategy}"


def build_set(inputs: dict[str, Pair], out: Pair, scheme: LabelScheme,
              upstream: SkippedRun | pd.DataFrame | None = None) -> pd.DataFrame | SkippedRun:
    """Combine the inputs (empty ones allowed) into `out`, tagging each row's `origin`."""
    if isinstance(upstream, SkippedRun):
        return upstream
    return combine(list(inputs.values()), out, scheme, origins=list(inputs), allow_empty=True)


def relabel_step(strategy: Strategy, layout: Layout, thresh: float) -> pd.DataFrame | SkippedRun:
    """Relabel the unsures from the strategy's differentiator and write unsure_relabeled_thresh_<t>.csv."""
    status = read_step_status(layout.metrics(step_name("04_differentiator", strategy.name)))
    if status["status"] != "ok":
        reason = f"differentiator of {strategy.name} is {status['status']}: {status.get('reason', '')}"
        print(f"NOT APPLICABLE: {reason}")
        return SkippedRun(reason)
    predictions_path = layout.predictions(strategy.name, "diff")
    diff = read_annotations(predictions_path)
    unsure = read_annotations(layout.class_set(layout.scheme.unsure).ann, scheme=layout.scheme)
    relabeled = relabel_unsure(unsure, diff, layout.scheme, thresh, str(predictions_path))
    with OutputSet(inputs=[predictions_path, layout.class_set(layout.scheme.unsure).ann]) as out:
        out.csv(relabeled, layout.relabeled(strategy.name, thresh))
    return relabeled


def relabel_counts(relabeled: pd.DataFrame | SkippedRun, scheme: LabelScheme) -> pd.DataFrame:
    """How many unsures went each way."""
    if isinstance(relabeled, SkippedRun):
        return pd.DataFrame({"status": [relabeled.status], "reason": [relabeled.reason]})
    names = relabeled["annotation"].map({1.0: scheme.positive, 0.0: scheme.negative})
    return names.value_counts().rename("unsure images").to_frame()


def set_counts(ann: pd.DataFrame | SkippedRun, scheme: LabelScheme) -> pd.DataFrame:
    """Images per input and class of a built set, or why it was not built."""
    from .datasets import class_counts

    if isinstance(ann, SkippedRun):
        return pd.DataFrame({"status": [ann.status], "reason": [ann.reason]})
    return class_counts(ann, scheme, by="origin")


def origin_counts(ann: pd.DataFrame | SkippedRun) -> dict[str, int]:
    return {} if isinstance(ann, SkippedRun) else {k: int(v) for k, v in ann["origin"].value_counts().items()}


def relabel_sweep_figure(relabeled: pd.DataFrame | SkippedRun, thresh: float, title: str):
    """Bar chart of how many unsures each threshold would send each way."""
    from . import plots
    from .experiment import message_figure
    from .relabel import relabel_sweep

    if isinstance(relabeled, SkippedRun):
        return message_figure(f"Not applicable: {relabeled.reason}")
    sweep = relabel_sweep(relabeled["relabel_score"].to_numpy())
    return plots.class_counts_bar(sweep[["to positive", "to negative"]], f"{title} (used: {thresh:g})")
