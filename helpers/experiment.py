"""One training run end to end: validate the input, fit, predict every image, score, write
`ann_with_predictions<_tag>.csv` and `model_perf<_tag>.zip` together (atomically)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plots
from .bundle import write_bundle
from .datasets import ImageSet, Pair, open_image_set
from .evaluation import classification_metrics, operating_thresholds, output_column, own_class_scores
from .io import OutputSet, file_checksum
from .labels import POSITIVE_VALUE, LabelScheme, round_annotations
from .training import FitResult, TrainConfig, checkpoint_path, fit, predict_probabilities, predictions_frame


@dataclass
class RunOutputs:
    image_set: ImageSet
    predictions: pd.DataFrame
    fit: FitResult
    metrics: dict[str, Any]
    figures: dict[str, Figure]
    predictions_path: Path
    bundle_path: Path


def score_predictions(predictions: pd.DataFrame, class_names: list[str], class_values: list[int],
                      scheme: LabelScheme, precision_target: float = 0.95, recall_target: float = 0.95) -> dict:
    """Metrics on the validation rows and on the shared test rows, plus the positive class's thresholds."""
    probs = predictions[[output_column(n) for n in class_names]].to_numpy()
    rounded = round_annotations(predictions["annotation"])
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        rows = np.flatnonzero((predictions["split"] == split).to_numpy() & (rounded >= 0))
        out[split] = classification_metrics(rounded[rows], probs[rows], class_values, class_names, POSITIVE_VALUE)
        if POSITIVE_VALUE in class_values and len(rows):
            certain = rows[np.isin(rounded[rows], [0, 1])]
            out[split]["thresholds"] = operating_thresholds(
                rounded[certain] == POSITIVE_VALUE, predictions[output_column(scheme.positive)].to_numpy()[certain],
                precision_target, recall_target)
    return out


def train_and_save(input_pair: Pair, scheme: LabelScheme, cfg: TrainConfig, predictions_path: Path,
                   bundle_path: Path, params: dict[str, Any] | None = None,
                   precision_target: float = 0.95, recall_target: float = 0.95,
                   wrong_from: str = "in_sample", folds: int = 5, fold_jobs: int = 1) -> RunOutputs:
    """Fit, predict every image, score, write predictions + bundle together.

    With wrong_from="out_of_fold" the predictions also get `folds`-fold out-of-fold outputs (`<class> out-of-fold`; rows no
    fold held out, such as test rows, take the final model's outputs, which never saw them either)
    and cleanlab's `label_quality` / `is_label_issue` computed from them.
    """
    image_set = open_image_set(input_pair, scheme)  # raises before anything is written
    result = fit(image_set, scheme, cfg, checkpoint_path(bundle_path))
    probs = predict_probabilities(result.model, image_set.images, cfg.torch_device, cfg.eval_batch_size)
    predictions = predictions_frame(image_set.ann, probs, result.spec.class_names, result.data.split)
    oof_metrics = (add_out_of_fold(predictions, image_set, scheme, cfg, result, probs, folds, fold_jobs)
                   if wrong_from == "out_of_fold" else None)
    metrics = {
        "status": "ok",
        "classes": result.spec.class_names,
        "rows": {"train": len(result.data.train_rows), "val": len(result.data.val_rows),
                 "test": int((result.data.split == "test").sum()), "total": len(predictions)},
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 3),
        "train_images_per_second": round(result.train_images_per_second, 1),
        **score_predictions(predictions, result.spec.class_names, result.spec.class_values, scheme,
                            precision_target, recall_target),
    }
    if oof_metrics:
        metrics["out_of_fold"] = oof_metrics
    figures = {"loss_curve": plots.loss_curves(result.history),
               "confusion_matrix": plots.confusion_matrices({"val": metrics["val"], "test": metrics["test"]})}
    all_params = {**(params or {}), "train": cfg.to_dict(),
                  "inputs": {str(p): file_checksum(p) for p in input_pair}}
    with OutputSet(inputs=list(input_pair)) as out:
        out.csv(predictions, predictions_path)
        write_bundle(out.path(bundle_path), result.model, result.spec, all_params, result.history, metrics, figures)
    return RunOutputs(image_set, predictions, result, metrics, figures, predictions_path, bundle_path)


def add_out_of_fold(predictions: pd.DataFrame, image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig,
                    result: FitResult, probs: np.ndarray, folds: int, jobs: int) -> dict[str, Any]:
    """Add out-of-fold outputs and cleanlab's columns to `predictions` (in place); returns their cost."""
    from .evaluation import oof_column
    from .label_quality import label_issue_columns, out_of_fold_probabilities

    oof = out_of_fold_probabilities(image_set, scheme, cfg, folds, jobs)
    held = oof.fold >= 0
    for i, name in enumerate(result.spec.class_names):
        predictions[oof_column(name)] = np.where(held, oof.probs[:, i], probs[:, i])
    predictions["fold"] = oof.fold
    issues = label_issue_columns(predictions, result.spec.class_names, result.spec.class_values)
    predictions[issues.columns] = issues
    return {"folds": folds, "fold_jobs": jobs, "seconds": round(oof.seconds, 3),
            "cost_vs_final_fit": round(oof.seconds / max(result.train_seconds, 1e-9), 2),
            "label_issues": int(issues["is_label_issue"].sum())}


def label_issue_summary(runs: dict[str, RunOutputs], scheme: LabelScheme) -> pd.DataFrame:
    """Per run: images called wrong in-sample and out-of-fold, cleanlab's issues, and what the folds cost."""
    from .evaluation import WRONG_FROM, right_wrong_counts, score_column

    rows = {}
    for name, run in runs.items():
        row: dict[str, Any] = {}
        for wrong_from in WRONG_FROM:
            if score_column(scheme.positive, wrong_from) in run.predictions.columns:
                row[f"wrong ({wrong_from})"] = int(right_wrong_counts(run.predictions, scheme, wrong_from)["wrong"].sum())
        oof = run.metrics.get("out_of_fold")
        if oof:
            row.update({"label issues (cleanlab)": oof["label_issues"], "folds": oof["folds"],
                        "fold seconds": oof["seconds"], "fold cost / final fit": oof["cost_vs_final_fit"]})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def label_issue_grid(run: RunOutputs, k: int = 16) -> Figure:
    """The images cleanlab ranks most likely mislabelled (lowest label_quality)."""
    if "label_quality" not in run.predictions.columns:
        return message_figure("No label_quality: run 03 with wrong_from='out_of_fold' for cleanlab's ranking.")
    return lowest_scores_grid(run, run.predictions["label_quality"].to_numpy(dtype=float), k,
                              "Most likely label issues (cleanlab, lowest label quality)")


def worst_mistakes(run: RunOutputs, k: int = 16, split: str | None = None) -> Figure:
    """The images whose annotated class got the lowest output: most confidently 'wrong'."""
    own = own_class_scores(run.predictions, run.fit.spec.class_names, run.fit.spec.class_values)
    if split:
        own[(run.predictions["split"] != split).to_numpy()] = np.nan
    return lowest_scores_grid(run, own, k, f"Most confident mistakes{f' ({split})' if split else ''}")


def lowest_scores_grid(run: RunOutputs, scores: np.ndarray, k: int, title: str) -> Figure:
    """The k images with the lowest (finite) score, lowest first, captioned."""
    from .review import captions

    candidates = np.flatnonzero(np.isfinite(scores))
    rows = candidates[np.argsort(scores[candidates], kind="stable")[:k]]
    return plots.labelled_grid(np.asarray(run.image_set.images[rows]), captions(run.predictions, rows), title=title)


def baseline_inputs(layout, which: str) -> dict[str, Pair]:
    """SA trains on the combined set (all classes), SB on the certain classes only."""
    inputs = {"s_a": layout.combined, "s_b": layout.certain}
    return {name: pair for name, pair in inputs.items() if which in ("both", name)}


def compare_runs(runs: dict[str, RunOutputs], scheme: LabelScheme) -> pd.DataFrame:
    """Headline test metrics of several runs side by side (same test rows)."""
    rows = {}
    for name, run in runs.items():
        test = run.metrics["test"]
        pos = test.get("per_class", {}).get(scheme.positive, {})
        thresholds = test.get("thresholds", {})
        rows[name] = {"test rows": test.get("rows", 0), "accuracy": test.get("accuracy"),
                      f"{scheme.positive} precision": pos.get("precision"), f"{scheme.positive} recall": pos.get("recall"),
                      f"{scheme.positive} F1": pos.get("f1"), "ROC AUC": test.get("roc_auc"),
                      "precision threshold": thresholds.get("precision_threshold"),
                      "recall threshold": thresholds.get("recall_threshold"),
                      "best epoch": run.metrics["best_epoch"], "train s": run.metrics["train_seconds"],
                      "train img/s": run.metrics["train_images_per_second"]}
    return pd.DataFrame(rows).T


def headline(run: RunOutputs) -> dict[str, Any]:
    """What a step's metrics.json says about one run."""
    m = run.metrics
    return {"status": m["status"], "test_accuracy": m["test"].get("accuracy"), "test_roc_auc": m["test"].get("roc_auc"),
            "val_accuracy": m["val"].get("accuracy"), "best_epoch": m["best_epoch"],
            "train_seconds": m["train_seconds"], "predictions": str(run.predictions_path), "bundle": str(run.bundle_path),
            **({"out_of_fold": m["out_of_fold"]} if "out_of_fold" in m else {})}


def positive_score_histogram(run: RunOutputs, scheme: LabelScheme, title: str = "") -> Figure:
    """The positive class's output for every image, one histogram per annotated class."""
    classes = pd.Series(scheme.class_names(run.predictions["annotation"]), index=run.predictions.index)
    return plots.score_histograms(run.predictions, output_column(scheme.positive), classes,
                                  title=title or f"{output_column(scheme.positive)} by annotated class")


def test_threshold_table(run: RunOutputs, scheme: LabelScheme, thresholds=None) -> pd.DataFrame:
    """Seed-003 threshold sweep of the positive output on the certain test rows."""
    from .evaluation import certain_scores, threshold_table

    test = np.flatnonzero((run.predictions["split"] == "test").to_numpy())
    return threshold_table(*certain_scores(run.predictions, scheme, test), thresholds)


# ---------------------------------------------------------------- steps that may not apply

@dataclass
class SkippedRun:
    """A run that cannot apply (e.g. a differentiator whose inputs hold one class only)."""

    reason: str
    status: str = "not applicable"


def train_step(input_pair: Pair, scheme: LabelScheme, cfg: TrainConfig, predictions_path: Path, bundle_path: Path,
               params: dict[str, Any] | None = None, upstream: Any = None,
               precision_target: float = 0.95, recall_target: float = 0.95) -> "RunOutputs | SkippedRun":
    """train_and_save, or a SkippedRun saying plainly why not (stale outputs of this step are removed).

    `upstream` is whatever the previous step returned; a SkippedRun there skips this step too.
    """
    from .errors import NotTrainable

    if isinstance(upstream, SkippedRun):
        skipped = SkippedRun(f"upstream step not applicable: {upstream.reason}")
    else:
        try:
            return train_and_save(input_pair, scheme, cfg, predictions_path, bundle_path, params,
                                  precision_target, recall_target)
        except NotTrainable as exc:
            skipped = SkippedRun(str(exc))
    for stale in (predictions_path, bundle_path):
        stale.unlink(missing_ok=True)
    print(f"NOT APPLICABLE: {skipped.reason}")
    return skipped


@dataclass
class ProposalRun:
    """A 04 step that labelled the unsures from the SB baseline instead of training a differentiator."""

    method: str
    predictions: pd.DataFrame  # the unsures: score columns, proposed_annotation, is_gt
    predictions_path: Path
    details: dict[str, Any]

    @property
    def message(self) -> str:
        return f"No differentiator trained: the {self.method} strategy proposes labels from SB's predictions."


def message_figure(text: str) -> Figure:
    fig = Figure(figsize=(7, 1.2))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return fig


def loss_figure(run: "RunOutputs | SkippedRun | ProposalRun", title: str = "Loss per epoch") -> Figure:
    if isinstance(run, SkippedRun):
        return message_figure(f"Not applicable: {run.reason}")
    if isinstance(run, ProposalRun):
        return message_figure(run.message)
    return plots.loss_curves(run.fit.history, title=title)


def confusion_figure(run: "RunOutputs | SkippedRun | ProposalRun", title: str = "Confusion matrix") -> Figure:
    if isinstance(run, SkippedRun):
        return message_figure(f"Not applicable: {run.reason}")
    if isinstance(run, ProposalRun):
        return message_figure(run.message)
    return plots.confusion_matrices({"val": run.metrics["val"], "test": run.metrics["test"]}, title=title)


def score_by_origin(run: "RunOutputs | SkippedRun | ProposalRun", scheme: LabelScheme, title: str = "") -> Figure:
    """The positive output of a differentiator, one histogram per input (unsure, wrong ...);
    for a proposal strategy, one per proposed label."""
    if isinstance(run, SkippedRun):
        return message_figure(f"Not applicable: {run.reason}")
    if isinstance(run, ProposalRun):
        from .relabel import PROPOSED, label_names

        group = "proposed " + label_names(run.predictions[PROPOSED], scheme)
    elif "origin" in run.predictions.columns:
        group = run.predictions["origin"]
    else:
        group = pd.Series("all", index=run.predictions.index)
    return plots.score_histograms(run.predictions, output_column(scheme.positive), group,
                                  title=title or f"{output_column(scheme.positive)} by input")


def step_metrics(step: str, run: "RunOutputs | SkippedRun | ProposalRun", **extra: Any) -> dict[str, Any]:
    """What a training step writes to its metrics.json, applicable or not."""
    if isinstance(run, SkippedRun):
        return {"step": step, "status": run.status, "reason": run.reason, **extra}
    if isinstance(run, ProposalRun):
        return {"step": step, "status": "ok", "method": run.method, "predictions": str(run.predictions_path),
                "proposal": run.details, **extra}
    return {"step": step, **headline(run), "metrics": {k: run.metrics[k] for k in ("val", "test", "rows", "classes")},
            **extra}


def read_step_status(path: Path) -> dict[str, Any]:
    """A step's metrics.json, or a status saying it has not run."""
    import json

    return json.loads(path.read_text()) if path.is_file() else {"status": "missing", "reason": f"{path} not found"}
