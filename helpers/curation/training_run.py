"""One training run end to end: validate the input, fit, predict every image, score, and write
`ann_with_predictions<_tag>.csv` and `model_perf<_tag>.zip` together (atomically). With
out-of-fold training the predictions also carry out-of-fold outputs and cleanlab's columns."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import plots
from ..core.columns import WRONG_FROM, oof_column, output_column, score_column
from ..core.errors import ParameterError
from ..core.io import OutputSet, file_checksum
from ..core.labels import LabelScheme
from ..data.layout import Layout
from ..data.sets import ImageSet, Pair, open_image_set
from ..metrics import score_predictions
from ..model.bundle import write_bundle
from ..model.inference import predict_probabilities, predictions_frame
from ..model.networks import ResNet
from ..model.training import FitResult, TrainConfig, checkpoint_path, fit
from .label_issues import label_issue_columns
from .out_of_fold import out_of_fold_probabilities
from .right_wrong import right_wrong_counts


@dataclass
class TrainedRun:
    """A finished training run: its input, predictions, fit, metrics and the files it wrote."""

    image_set: ImageSet
    predictions: pd.DataFrame
    fit: FitResult
    metrics: dict[str, Any]
    figures: dict[str, Figure]
    predictions_path: Path
    bundle_path: Path


def train_and_save(input_pair: Pair, scheme: LabelScheme, cfg: TrainConfig, predictions_path: Path,
                   bundle_path: Path, params: dict[str, Any] | None = None,
                   precision_target: float = 0.95, recall_target: float = 0.95,
                   wrong_from: str = "in_sample", folds: int = 5, fold_jobs: int = 1, fold_ensemble: bool = False,
                   title: str = "") -> TrainedRun:
    """Fit, predict every image, score, write predictions + bundle together. `title` names the run in
    its figures (loss curves, confusion matrices), which the bundle and the notebooks both show.

    With wrong_from="out_of_fold" the predictions also get `folds`-fold out-of-fold outputs (`<class> out-of-fold`; rows no
    fold held out, such as test rows, take the final model's outputs, which never saw them either)
    and cleanlab's `label_quality` / `is_label_issue` computed from them. With `fold_ensemble` the rows
    no fold trained on (test rows, excluded and unlabeled rows) are predicted by the fold models'
    mean, which the bundle keeps and predicts new images with.
    """
    if fold_ensemble and wrong_from != "out_of_fold":
        raise ParameterError("fold_ensemble", "needs wrong_from='out_of_fold' (the fold models it averages)")
    image_set = open_image_set(input_pair, scheme)  # raises before anything is written
    result = fit(image_set, scheme, cfg, checkpoint_path(bundle_path))
    probs = predict_probabilities(result.model, image_set.images, cfg.torch_device, cfg.eval_batch_size)
    predictions = predictions_frame(image_set.ann, probs, result.spec.class_names, result.data.split)
    oof = (add_out_of_fold(predictions, image_set, scheme, cfg, result, probs, folds, fold_jobs, fold_ensemble)
           if wrong_from == "out_of_fold" else None)
    metrics = {
        "status": "ok",
        "classes": result.spec.class_names,
        "rows": {"train": len(result.data.train_rows), "val": len(result.data.val_rows),
                 "test": int((result.data.split == "test").sum()), "total": len(predictions)},
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "train_seconds": round(result.train_seconds, 3),
        "train_images_per_second": round(result.train_images_per_second, 1),
        **score_predictions(predictions, result.spec.class_names, result.spec.class_values, scheme,
                            precision_target, recall_target),
    }
    if oof:
        metrics["out_of_fold"] = oof.metrics
    figures = {"loss_curve": plots.loss_curves(result.history, title=f"{title}: loss per epoch" if title else
                                               "Loss per epoch"),
               "confusion_matrix": plots.confusion_matrices({"val": metrics["val"], "test": metrics["test"]},
                                                            title=title or "Confusion matrix")}
    all_params = {**(params or {}), "train": cfg.to_dict(),
                  "inputs": {str(p): file_checksum(p) for p in input_pair}}
    with OutputSet(inputs=list(input_pair)) as out:
        out.csv(predictions, predictions_path)
        write_bundle(out.path(bundle_path), result.model, result.spec, all_params, result.history, metrics, figures,
                     fold_models=oof.models if oof and fold_ensemble else [])
    return TrainedRun(image_set, predictions, result, metrics, figures, predictions_path, bundle_path)


@dataclass
class FoldOutputs:
    metrics: dict[str, Any]  # what the folds cost and found
    models: list[ResNet]


def add_out_of_fold(predictions: pd.DataFrame, image_set: ImageSet, scheme: LabelScheme, cfg: TrainConfig,
                    result: FitResult, probs: np.ndarray, folds: int, jobs: int, ensemble: bool) -> FoldOutputs:
    """Add out-of-fold outputs and cleanlab's columns to `predictions` (in place); with `ensemble`,
    the rows no fold trained on take the fold models' mean as their `<class> output`."""
    oof = out_of_fold_probabilities(image_set, scheme, cfg, folds, jobs, ensemble)
    held = oof.fold >= 0
    for i, name in enumerate(result.spec.class_names):
        if ensemble:
            predictions[output_column(name)] = np.where(held, probs[:, i], oof.ensemble_probs[:, i])
        predictions[oof_column(name)] = np.where(held, oof.probs[:, i], predictions[output_column(name)])
    predictions["fold"] = oof.fold
    issues = label_issue_columns(predictions, result.spec.class_names, result.spec.class_values)
    predictions[issues.columns] = issues
    return FoldOutputs({"folds": folds, "fold_jobs": jobs, "fold_ensemble": ensemble, "seconds": round(oof.seconds, 3),
                        "cost_vs_final_fit": round(oof.seconds / max(result.train_seconds, 1e-9), 2),
                        "label_issues": int(issues["is_label_issue"].sum())}, oof.models)


def label_issue_summary(runs: Mapping[str, TrainedRun], scheme: LabelScheme) -> pd.DataFrame:
    """Per run: images called wrong in-sample and out-of-fold, cleanlab's issues, and what the folds cost."""
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


def baseline_inputs(layout: Layout, which: str) -> dict[str, Pair]:
    """SA trains on the combined set (all classes), SB on the certain classes only."""
    inputs = {"s_a": layout.combined, "s_b": layout.certain}
    return {name: pair for name, pair in inputs.items() if which in ("both", name)}


def compare_runs(runs: Mapping[str, TrainedRun], scheme: LabelScheme) -> pd.DataFrame:
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


def headline(run: TrainedRun) -> dict[str, Any]:
    """What a step's metrics.json says about one run."""
    m = run.metrics
    return {"status": m["status"], "test_accuracy": m["test"].get("accuracy"), "test_roc_auc": m["test"].get("roc_auc"),
            "val_accuracy": m["val"].get("accuracy"), "best_epoch": m["best_epoch"],
            "train_seconds": m["train_seconds"], "predictions": str(run.predictions_path), "bundle": str(run.bundle_path),
            **({"out_of_fold": m["out_of_fold"]} if "out_of_fold" in m else {})}
