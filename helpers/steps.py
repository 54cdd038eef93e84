"""The data steps of a strategy run (notebooks 04 and 05): build the differentiator's set, relabel
the unsures, build the final classifier's set. Each passes a SkippedRun through unchanged, so a
strategy that cannot apply says why in every cell and the rest of the run goes on."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .datasets import Pair, combine, read_annotations
from .experiment import ProposalRun, RunOutputs, SkippedRun, read_step_status, train_step
from .io import OutputSet
from .labels import LabelScheme
from .layout import Layout
from .relabel import relabel_unsure
from .strategies import Strategy

if TYPE_CHECKING:
    from .params import Config


def step_name(notebook: str, strategy: str) -> str:
    return f"{notebook}_{strategy}"


def build_set(inputs: dict[str, Pair], out: Pair, scheme: LabelScheme,
              upstream: SkippedRun | pd.DataFrame | None = None) -> pd.DataFrame | SkippedRun:
    """Combine the inputs (empty ones allowed) into `out`, tagging each row's `origin`."""
    if isinstance(upstream, SkippedRun):
        return upstream
    return combine(list(inputs.values()), out, scheme, origins=list(inputs), allow_empty=True)


def differentiator_set(strategy: Strategy, inputs: dict[str, Pair], layout: Layout) -> pd.DataFrame | None:
    """Build `s_XY/combined_{images,ann}_diff` for a differentiator; None for a proposal strategy."""
    if not strategy.trains_differentiator:
        return None
    return build_set(inputs, layout.run_set(strategy.name, "diff"), layout.scheme)


def differentiator_step(strategy: Strategy, cfg: "Config") -> RunOutputs | SkippedRun | ProposalRun:
    """Train the strategy's differentiator, or (proposal strategies) label the unsures from SB.

    Either way `s_XY/ann_with_predictions_diff.csv` holds a parasite output per unsure for 05.
    """
    layout, name = cfg.layout, strategy.name
    predictions_path = layout.predictions(name, "diff")
    if strategy.trains_differentiator:
        return train_step(layout.run_set(name, "diff"), layout.scheme,
                          cfg.train_config(run_name=f"{name}_diff", bundle_path=layout.model_perf(name, "diff")),
                          predictions_path, layout.model_perf(name, "diff"), params=cfg.values,
                          precision_target=cfg.precision_target, recall_target=cfg.recall_target)
    from .proposals import propose

    predictions, proposal = propose(strategy.method, layout, cfg.delta, cfg.n_neighbors,
                                    cfg.precision_target, cfg.recall_target)
    with OutputSet(inputs=[layout.class_set(layout.scheme.unsure).ann]) as out:
        out.csv(predictions, predictions_path)
    layout.model_perf(name, "diff").unlink(missing_ok=True)  # a stale differentiator of an earlier definition
    return ProposalRun(strategy.method, predictions, predictions_path, proposal.details)


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


def classifier_set(strategy: Strategy, layout: Layout, thresh: float, relabeled: pd.DataFrame | SkippedRun,
                   sample_weights: str = "none") -> pd.DataFrame | SkippedRun:
    """Build `s_XY/combined_{images,ann}_cl`: the certain images plus the relabeled unsures.

    With sample_weights="label_quality" each row also gets the baseline's `label_quality`
    (confident learning, 03 with wrong_from=out_of_fold) for the loss to weight by.
    """
    from .strategies import classifier_inputs

    if isinstance(relabeled, SkippedRun):
        return relabeled
    quality = baseline_label_quality(strategy, layout) if sample_weights == "label_quality" else None
    out = layout.run_set(strategy.name, "cl")
    ann = build_set(classifier_inputs(strategy, layout, thresh), out, layout.scheme)
    if quality is not None:
        ann = ann.drop(columns="label_quality", errors="ignore").merge(quality, on="image_id", how="left")
        ann.index.name = "index"
        with OutputSet() as files:
            files.csv(ann, out.ann)
    return ann


def baseline_label_quality(strategy: Strategy, layout: Layout) -> pd.DataFrame:
    """image_id -> label_quality from the strategy's baseline predictions (checked before any work)."""
    from .errors import InputError

    path = layout.predictions(strategy.baseline)
    if not path.is_file():
        raise InputError(path, "not found: run 03 first")
    predictions = pd.read_csv(path)
    if "label_quality" not in predictions.columns:
        raise InputError(path, "no label_quality column: sample_weights='label_quality' needs 03 run with "
                               "wrong_from='out_of_fold'")
    return predictions[["image_id", "label_quality"]]


def relabel_counts(relabeled: pd.DataFrame | SkippedRun, scheme: LabelScheme) -> pd.DataFrame:
    """How many unsures went each way."""
    if isinstance(relabeled, SkippedRun):
        return pd.DataFrame({"status": [relabeled.status], "reason": [relabeled.reason]})
    from .relabel import label_names

    names = label_names(relabeled["annotation"], scheme, excluded="excluded (not trained on)")
    return names.value_counts().rename("unsure images").to_frame()


def set_counts(ann: pd.DataFrame | SkippedRun | None, scheme: LabelScheme) -> pd.DataFrame:
    """Images per input and class of a built set, or why it was not built."""
    from .datasets import class_counts

    if isinstance(ann, SkippedRun):
        return pd.DataFrame({"status": [ann.status], "reason": [ann.reason]})
    if ann is None:
        return pd.DataFrame({"set": ["none: this strategy trains no differentiator"]})
    return class_counts(ann, scheme, by="origin")


def origin_counts(ann: pd.DataFrame | SkippedRun | None) -> dict[str, int]:
    return {} if ann is None or isinstance(ann, SkippedRun) else {k: int(v) for k, v in ann["origin"].value_counts().items()}


def relabel_sweep_figure(relabeled: pd.DataFrame | SkippedRun, thresh: float, title: str):
    """Bar chart of how many unsures each threshold would send each way."""
    from . import plots
    from .experiment import message_figure
    from .relabel import relabel_sweep

    if isinstance(relabeled, SkippedRun):
        return message_figure(f"Not applicable: {relabeled.reason}")
    sweep = relabel_sweep(relabeled["relabel_score"].to_numpy())
    return plots.class_counts_bar(sweep[["to positive", "to negative"]], f"{title} (used: {thresh:g})")
