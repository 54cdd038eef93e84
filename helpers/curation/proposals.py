"""Label the unsures without a differentiator: proposals from the SB baseline.

- CEAL: an unsure whose SB prediction is confident (entropy below `delta`) gets SB's label as a
  pseudo-label; the rest stay out of training.
- Label propagation: labels spread from the certain images to the unsures over a cosine kNN graph
  of SB's penultimate features (scikit-learn's LabelSpreading).
- Two thresholds: thresholds calibrated on SB's out-of-sample scores of the certain images; above
  the upper one parasite, below the lower one non-parasite, in between out.
- Soft targets: every unsure trains towards SB's parasite probability itself (`soft_target`), its
  hard label being the more likely class.
- Exclude: every unsure stays out of training, as in SB (for strategies that only curate the
  certain images' labels).

Each returns one row per unsure: its score (the parasite probability behind the proposal) and the
proposed annotation (1, 0, or -0.8 = excluded, i.e. predicted but never trained on).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.semi_supervised import LabelSpreading

from ..core.columns import OUT_OF_FOLD, PROPOSED, SOFT_TARGET, output_column, score_column, test_mask
from ..core.errors import InputError
from ..core.labels import EXCLUDED_UNSURE_VALUE, NEGATIVE_VALUE, POSITIVE_VALUE, LabelScheme, round_annotations
from ..data.layout import Layout
from ..data.sets import ImageSet, open_image_set, read_annotations
from ..metrics import entropy, operating_thresholds
from ..model.bundle import Bundle, load_bundle, predict_with_bundle
from ..model.inference import predict_features
from .training_run import OperatingTargets, score_source


@dataclass
class Proposal:
    scores: np.ndarray  # parasite probability behind each unsure's proposal
    proposed: np.ndarray  # 1, 0 or EXCLUDED_UNSURE_VALUE per unsure
    details: dict  # what decided it (thresholds, delta, ...), for metrics.json


def binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    """The entropy in bits of a two-class output given as one class's probability."""
    p = np.asarray(p, float)
    return entropy(np.stack([p, 1 - p], axis=1), bits=True)


def ceal(scores: np.ndarray, delta: float) -> Proposal:
    """Confident unsures (entropy < delta bits) take the baseline's label; the others are excluded."""
    confident = binary_entropy_bits(scores) < delta
    proposed = np.where(confident, np.where(scores > 0.5, POSITIVE_VALUE, NEGATIVE_VALUE), EXCLUDED_UNSURE_VALUE).astype(float)
    return Proposal(np.asarray(scores, float), proposed, {"delta_bits": delta, "confident": int(confident.sum())})


def soft(scores: np.ndarray) -> Proposal:
    """Every unsure gets its score as a soft target; its hard label (for counts and metrics) is the likelier class."""
    scores = np.asarray(scores, float)
    proposed = np.where(scores > 0.5, POSITIVE_VALUE, NEGATIVE_VALUE).astype(float)
    return Proposal(scores, proposed, {"soft_targets": len(scores), "mean_target": float(scores.mean()) if len(scores) else None})


def exclude(scores: np.ndarray) -> Proposal:
    """Every unsure stays out of training (predicted only), as in SB."""
    return Proposal(np.asarray(scores, float), np.full(len(scores), EXCLUDED_UNSURE_VALUE), {"excluded": len(scores)})


def two_thresholds(scores: np.ndarray, lower: float | None, upper: float | None) -> Proposal:
    """score >= upper: positive; score < lower (and below upper): negative; otherwise excluded.
    An unreachable threshold (None) sends nothing that way."""
    upper_t = 1.0 + 1e-9 if upper is None else upper
    lower_t = 0.0 if lower is None else min(lower, upper_t)
    proposed = np.full(len(scores), EXCLUDED_UNSURE_VALUE)
    proposed[scores < lower_t] = NEGATIVE_VALUE
    proposed[scores >= upper_t] = POSITIVE_VALUE
    return Proposal(np.asarray(scores, float), proposed, {"lower_threshold": lower, "upper_threshold": upper})


def propagate(features_labelled: np.ndarray, labels: np.ndarray, features_unsure: np.ndarray,
              n_neighbors: int = 10, alpha: float = 0.2) -> Proposal:
    """Label spreading on a kNN graph; features are L2-normalised, so Euclidean neighbours are cosine ones."""
    x = np.concatenate([features_labelled, features_unsure]).astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = np.concatenate([np.asarray(labels, int), np.full(len(features_unsure), -1)])
    model = LabelSpreading(kernel="knn", n_neighbors=min(n_neighbors, len(x) - 1), alpha=alpha, max_iter=100)
    model.fit(x, y)
    dist = model.label_distributions_[len(features_labelled):]
    positive = list(model.classes_).index(POSITIVE_VALUE)
    scores = np.nan_to_num(dist[:, positive], nan=0.5)
    proposed = np.where(scores > 0.5, POSITIVE_VALUE, NEGATIVE_VALUE).astype(float)
    return Proposal(scores, proposed, {"n_neighbors": n_neighbors, "alpha": alpha, "labelled_nodes": len(labels)})


# ---------------------------------------------------------------- from the pipeline's files

@dataclass
class Baseline:
    """SB's model and predictions, and the unsure set it never trained on."""

    unsure: ImageSet
    unsure_scores: np.ndarray
    predictions: pd.DataFrame  # SB's predictions of the certain images
    bundle: Bundle


def load_baseline(layout: Layout, run: str = "s_b") -> Baseline:
    """SB's bundle applied to the unsure images (read and checked before any work)."""
    scheme = layout.scheme
    bundle_path, predictions_path = layout.model_perf(run), layout.predictions(run)
    for path in (bundle_path, predictions_path):
        if not path.is_file():
            raise InputError(path, f"not found: run 03 (baseline {run}) first")
    bundle = load_bundle(bundle_path)
    if scheme.positive not in bundle.spec.class_names:
        raise InputError(bundle_path, f"the {run} model has no {scheme.positive!r} output")
    unsure = open_image_set(layout.class_set(scheme.unsure), scheme, allow_empty=True)
    probs = predict_with_bundle(bundle, unsure.images, unsure.pair.images) if len(unsure) else np.zeros((0, 2))
    scores = probs[:, bundle.spec.class_names.index(scheme.positive)] if len(unsure) else np.zeros(0)
    return Baseline(unsure, scores, read_annotations(predictions_path), bundle)


def calibration_rows(annotations: np.ndarray, split: np.ndarray, scheme: LabelScheme, source: str) -> np.ndarray:
    """The certain rows whose `source` scores are out-of-sample: every non-test row's out-of-fold
    output, or (in-sample) only the validation rows'."""
    certain = scheme.certain_mask(annotations)
    split = np.asarray(split).astype(str)
    return np.flatnonzero(certain & ((split != "test") if source == OUT_OF_FOLD else (split == "val")))


def propose(method: str, layout: Layout, *, delta: float = 0.5, n_neighbors: int = 10,
            targets: OperatingTargets = OperatingTargets()) -> tuple[pd.DataFrame, Proposal]:
    """The unsure annotations with `<class> output` columns (the score), `proposed_annotation` and
    `is_gt` False (and `soft_target` for soft), plus the Proposal. `method`: ceal, propagation,
    two_thresholds, soft or exclude. Two thresholds are calibrated on SB's out-of-sample scores:
    out-of-fold when SB trained fold models, else its validation rows."""
    scheme = layout.scheme
    base = load_baseline(layout)
    scores = base.unsure_scores
    if method == "ceal":
        proposal = ceal(scores, delta)
    elif method == "soft":
        proposal = soft(scores)
    elif method == "exclude":
        proposal = exclude(scores)
    elif method == "two_thresholds":
        source = score_source(base.bundle.metrics)
        rows = calibration_rows(base.predictions["annotation"], base.predictions["split"], scheme, source)
        rounded = round_annotations(base.predictions["annotation"])[rows]
        cal = base.predictions[score_column(scheme.positive, source)].to_numpy()[rows]
        t = operating_thresholds(rounded == POSITIVE_VALUE, cal, targets.precision, targets.recall)
        proposal = two_thresholds(scores, t["recall_threshold"], t["precision_threshold"])
        proposal.details.update({"calibrated_on": f"{len(rows)} certain rows ({source} outputs)",
                                 "precision_target": targets.precision, "recall_target": targets.recall})
    elif method == "propagation":
        certain = open_image_set(layout.certain, scheme)
        rounded = round_annotations(certain.ann["annotation"])
        labelled = np.flatnonzero(~test_mask(certain.ann) & scheme.certain_mask(rounded))
        proposal = propagate(predict_features(base.bundle.model, certain.images[labelled]), rounded[labelled],
                             predict_features(base.bundle.model, base.unsure.images), n_neighbors)
    else:
        raise ValueError(f"unknown proposal method {method!r}")
    out = base.unsure.ann.copy()
    out[output_column(scheme.negative)] = 1 - proposal.scores
    out[output_column(scheme.positive)] = proposal.scores
    out[PROPOSED] = proposal.proposed
    if method == "soft":
        out[SOFT_TARGET] = proposal.scores
    out["is_gt"] = False
    return out, proposal
