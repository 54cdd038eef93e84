"""One training run end to end: validate the input, fit, predict every image, score, and write
`ann_with_predictions<_tag>.csv` and `model_perf<_tag>.zip` together (atomically). With
out-of-fold training the predictions also carry out-of-fold outputs and cleanlab's columns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from .. import plots
from ..core.atomic import OutputSet
from ..core.columns import IN_SAMPLE, OUT_OF_FOLD, WRONG_FROM, oof_column, output_column
from ..core.fingerprints import file_checksum
from ..core.labels import LabelScheme
from ..data.layout import Layout
from ..data.sets import ImageSet, Pair, open_image_set
from ..metrics import score_predictions
from ..model.bundle import write_bundle
from ..model.checkpoints import checkpoint_path
from ..model.cotrain import fit_cotrain
from ..model.inference import ensemble_probabilities, predict_probabilities_and_features, predictions_frame
from ..model.networks import ResNet
from ..model.settings import TrainConfig
from ..model.training import FitResult, explain_out_of_memory, fit
from .label_issues import label_issue_columns, neighbour_issue_columns
from .out_of_fold import FoldSettings, out_of_fold_probabilities
from .right_wrong import right_wrong_counts


@dataclass(frozen=True)
class OperatingTargets:
    """The precision and recall the two operating thresholds are chosen for (see metrics.operating_thresholds)."""

    precision: float = 0.95
    recall: float = 0.95


@dataclass
class TrainRequest:
    """One training run, asked for in full: how to train, where to write, and what else to compute.

    Built by `Config.train_request` in the pipeline; `out_of_fold` set means the run also trains
    fold models for out-of-fold outputs and cleanlab's columns. `params` is what params.json records.
    """

    train: TrainConfig
    predictions_path: Path
    bundle_path: Path
    out_of_fold: FoldSettings | None = None
    targets: OperatingTargets = OperatingTargets()
    params: dict[str, Any] = field(default_factory=dict)
    title: str = ""  # names the run in its figures


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

    @property
    def score_source(self) -> str:
        """Which of its outputs judge its own images: out_of_fold when it trained fold models, else in_sample."""
        return score_source(self.metrics)


def score_source(run_metrics: dict[str, Any]) -> str:
    """out_of_fold for a run (its metrics.json) that trained fold models, in_sample otherwise."""
    return OUT_OF_FOLD if "out_of_fold" in run_metrics else IN_SAMPLE


def train_and_save(input_pair: Pair, scheme: LabelScheme, request: TrainRequest) -> TrainedRun:
    """Fit, predict every image, score, write predictions + bundle together. The run's title names
    it in its figures (loss curves, confusion matrices), which the bundle and the notebooks both show.

    With out-of-fold settings the predictions also get out-of-fold outputs (`<class> out-of-fold`; rows
    no fold held out, such as test rows, take the final model's outputs, which never saw them either)
    and cleanlab's `label_quality` / `is_label_issue` computed from them (settings without
    `fold_models`: the neighbour flags only). With a fold ensemble the rows
    no fold trained on (test rows, excluded and unlabeled rows) are predicted by the fold models'
    mean, which the bundle keeps and predicts new images with.
    """
    cfg = request.train
    image_set = open_image_set(input_pair, scheme)  # raises before anything is written
    fitter = fit_cotrain if cfg.unlabeled == "cotrain" else fit
    result = fitter(image_set, scheme, cfg, checkpoint_path(request.bundle_path))
    images, features = cfg.device_images(image_set.images), None
    with explain_out_of_memory(cfg):
        if request.out_of_fold:  # neighbour flags compare images by their features: taken in the same pass
            probs, features = predict_probabilities_and_features(
                result.model, images, cfg.torch_device, cfg.eval_batch_size,
                view_mean=request.out_of_fold.features == "view_mean", amp=cfg.amp)
        else:
            probs = ensemble_probabilities(result.predictors, images, cfg.torch_device, cfg.eval_batch_size,
                                           amp=cfg.amp)
    predictions = predictions_frame(image_set.ann, probs, result.spec.class_names, result.data.split)
    oof = (add_out_of_fold(predictions, image_set, scheme, request, result, probs=probs, features=features)
           if request.out_of_fold else None)
    metrics = run_metrics(predictions, scheme, request, result)
    if oof:  # a run without fold models has no out-of-fold outputs to judge its images by (score_source)
        metrics["out_of_fold" if request.out_of_fold.fold_models else "neighbour_flags"] = oof.metrics
    title = request.title
    figures = {"loss_curve": plots.loss_curves(result.history, title=f"{title}: loss per epoch" if title else
                                               "Loss per epoch"),
               "confusion_matrix": plots.confusion_matrices({"val": metrics["val"], "test": metrics["test"]},
                                                            title=title or "Confusion matrix")}
    all_params = {**request.params, "train": cfg.to_dict(),
                  "inputs": {str(p): file_checksum(p) for p in input_pair}}
    with OutputSet(inputs=list(input_pair)) as out:
        out.csv(predictions, request.predictions_path)
        write_bundle(out.path(request.bundle_path), result.model, result.spec, all_params, history=result.history,
                     metrics=metrics, figures=figures,
                     fold_models=oof.models if oof and request.out_of_fold.ensemble else result.ensemble)
    return TrainedRun(image_set, predictions, result, metrics, figures, request.predictions_path, request.bundle_path)


def run_metrics(predictions: pd.DataFrame, scheme: LabelScheme, request: TrainRequest,
                result: FitResult) -> dict[str, Any]:
    """What a run's metrics.json says: its rows, epochs, speed and scores on the validation and test rows."""
    return {
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
        "batch_size": result.batch_size,
        "lr": result.lr,
        "device": str(request.train.torch_device),
        **({"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
           if request.train.torch_device.type == "cuda" else {}),
        **score_predictions(predictions, result.spec.class_names, result.spec.class_values, scheme,
                            request.targets.precision, request.targets.recall),
    }


@dataclass
class FoldOutputs:
    metrics: dict[str, Any]  # what the folds cost and found
    models: list[ResNet]


def add_out_of_fold(predictions: pd.DataFrame, image_set: ImageSet, scheme: LabelScheme, request: TrainRequest,
                    result: FitResult, *, probs: np.ndarray, features: np.ndarray) -> FoldOutputs:
    """Add out-of-fold outputs, cleanlab's columns and the neighbour flags (from the final model's
    `features`, as `issue_features` chose them) to `predictions` (in place); with a fold ensemble,
    the rows no fold trained on take the fold models' mean as their `<class> output`."""
    folds = request.out_of_fold
    if not folds.fold_models:
        return FoldOutputs({"folds": 0, "neighbour_issues": add_neighbour_flags(predictions, features, result, folds)},
                           [])
    oof = out_of_fold_probabilities(image_set, scheme, request.train, folds)
    held = oof.fold >= 0
    for i, name in enumerate(result.spec.class_names):
        if folds.ensemble:
            predictions[output_column(name)] = np.where(held, probs[:, i], oof.ensemble_probs[:, i])
        predictions[oof_column(name)] = np.where(held, oof.probs[:, i], predictions[output_column(name)])
    predictions["fold"] = oof.fold
    issues = label_issue_columns(predictions, result.spec.class_names, result.spec.class_values)
    predictions[issues.columns] = issues
    neighbour_issues = add_neighbour_flags(predictions, features, result, folds)
    return FoldOutputs({"folds": folds.folds, "fold_jobs": folds.jobs, "fold_ensemble": folds.ensemble,
                        "seconds": round(oof.seconds, 3),
                        "cost_vs_final_fit": round(oof.seconds / max(result.train_seconds, 1e-9), 2),
                        "label_issues": int(issues["is_label_issue"].sum()),
                        "neighbour_issues": neighbour_issues}, oof.models)


def add_neighbour_flags(predictions: pd.DataFrame, features: np.ndarray, result: FitResult,
                        folds: FoldSettings) -> int:
    """Add the neighbour flags from the final model's `features` to `predictions` (in place); how many it flags."""
    neighbours = neighbour_issue_columns(predictions, features, result.spec.class_values, n_neighbors=folds.neighbors)
    predictions[neighbours.columns] = neighbours
    return int(neighbours["is_neighbour_issue"].sum())


def label_issue_summary(runs: Mapping[str, TrainedRun], scheme: LabelScheme) -> pd.DataFrame:
    """Per run: images called wrong in-sample and out-of-fold, cleanlab's issues, and what the folds cost."""
    rows = {}
    for name, run in runs.items():
        row: dict[str, Any] = {}
        for source in (WRONG_FROM if run.score_source == OUT_OF_FOLD else (IN_SAMPLE,)):
            row[f"wrong ({source})"] = int(right_wrong_counts(run.predictions, scheme, source)["wrong"].sum())
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
