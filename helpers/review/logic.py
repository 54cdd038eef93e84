"""The logic behind interactive review, as plain functions (the widgets only call these).

Sorting and filtering predictions, paging, active-review sampling (random, entropy, BADGE) and the
threshold explorer's numbers. Corrections are stored by `data.overrides`; similar images and
embeddings are in `review.features`.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.columns import TEST_QUEUE, output_column, output_probabilities
from ..core.errors import InputError, ParameterError
from ..core.files import read_csv_file
from ..core.labels import LabelScheme, round_annotations
from ..core.paths import resolve
from ..data.layout import CLASSIFIER, Layout
from ..data.overrides import OverrideStore
from ..data.red_cells import RedCellCounts
from ..data.sets import open_images, read_annotations
from ..data.verified import VerifiedStore
from ..metrics import (
    certain_scores,
    entropy,
    false_positives_per_ul,
    false_positives_summary,
    split_rows,
    threshold_summary,
)

SORTS = ("likely wrong", "score", "entropy", "label", "random")
QUEUE_ORDER = "queue order"  # the rows as given: 06's test-review queue, the rows that decide the verdict first


def predicted_class(preds: pd.DataFrame) -> np.ndarray:
    probs, names = output_probabilities(preds)
    return np.asarray(names)[probs.argmax(axis=1)]


# ---------------------------------------------------------------- sort, filter, page

def order_rows(preds: pd.DataFrame, scheme: LabelScheme, sort: str = "likely wrong", class_name: str | None = None,
               descending: bool = True, seed: int = 0) -> np.ndarray:
    """Row numbers in review order.

    likely wrong: rows whose label disagrees with the prediction first, most confident first;
    score: a class's output; entropy: most uncertain first (descending); label; random (seeded);
    queue order: as given.
    """
    n = len(preds)
    if sort == QUEUE_ORDER:
        return np.arange(n)
    if sort == "random":
        return np.random.default_rng(seed).permutation(n)
    if sort == "label":
        key = round_annotations(preds["annotation"]).astype(float)
    elif sort == "entropy":
        key = entropy(output_probabilities(preds)[0])
    elif sort == "score":
        key = preds[output_column(class_name or scheme.positive)].to_numpy(dtype=float)
    elif sort == "likely wrong":
        probs, names = output_probabilities(preds)
        disagree = predicted_class(preds) != scheme.class_names(preds["annotation"])
        key = np.where(disagree, 1.0 + probs.max(axis=1), 0.0)  # disagreeing rows first, by confidence
        return np.argsort(-key, kind="stable")
    elif sort in preds.columns:  # any numeric column, e.g. label_quality
        key = preds[sort].to_numpy(dtype=float)
    else:
        raise ValueError(f"sort must be one of {SORTS} or a column, got {sort!r}")
    order = np.argsort(key, kind="stable")
    return order[::-1] if descending else order


def filter_rows(preds: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray, *, label: str | None = None,
                split: str | None = None, score_class: str | None = None,
                score_range: tuple[float, float] | None = None) -> np.ndarray:
    """Keep rows (in their order) matching a label, a split and a score range of one class."""
    keep = np.ones(len(preds), bool)
    if label:
        keep &= scheme.class_names(preds["annotation"]) == label
    if split and "split" in preds.columns:
        keep &= (preds["split"] == split).to_numpy()
    if score_range is not None:
        score = preds[output_column(score_class or scheme.positive)].to_numpy(dtype=float)
        keep &= (score >= score_range[0]) & (score <= score_range[1])
    return rows[keep[rows]]


def page(rows: np.ndarray, number: int, per_page: int) -> np.ndarray:
    """Rows of page `number` (0-based); clamped to the last page."""
    pages = max(1, -(-len(rows) // per_page))
    number = min(max(number, 0), pages - 1)
    return rows[number * per_page:(number + 1) * per_page]


# ---------------------------------------------------------------- active-review sampling

SAMPLERS = ("random", "max entropy", "class entropy", "high score", "badge")


def sample_for_review(preds: pd.DataFrame, method: str, k: int, class_name: str | None = None, *,
                      features: np.ndarray | None = None, candidates: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """The next k rows to review, chosen among `candidates` (default: all rows)."""
    candidates = np.arange(len(preds)) if candidates is None else np.asarray(candidates)
    k = min(k, len(candidates))
    probs, names = output_probabilities(preds)
    probs = probs[candidates]
    if method == "random":
        return np.random.default_rng(seed).choice(candidates, k, replace=False)
    if method == "max entropy":
        return candidates[np.argsort(-entropy(probs), kind="stable")[:k]]
    if method in ("class entropy", "high score"):
        p = probs[:, names.index(class_name or names[-1])]
        key = entropy(np.stack([p, 1 - p], 1)) if method == "class entropy" else p
        return candidates[np.argsort(-key, kind="stable")[:k]]
    if method == "badge":
        if features is None:
            raise ValueError("BADGE needs penultimate features of the images")
        return candidates[badge(probs, features[candidates], k, seed)]
    raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")


def badge(probs: np.ndarray, features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """BADGE (Ash et al.): k-means++ seeding on gradient embeddings (p - onehot(argmax)) x features,
    so the picks are both uncertain (large gradients) and diverse."""
    rng = np.random.default_rng(seed)
    grad = probs.copy()
    grad[np.arange(len(grad)), probs.argmax(1)] -= 1
    emb = (grad[:, :, None] * features[:, None, :]).reshape(len(grad), -1)
    chosen = [int(np.argmax((emb**2).sum(1)))]
    dist = ((emb - emb[chosen[0]]) ** 2).sum(1)
    while len(chosen) < k:
        if dist.sum() <= 0:
            rest = np.setdiff1d(np.arange(len(emb)), chosen)
            chosen += list(rng.choice(rest, k - len(chosen), replace=False))
            break
        nxt = int(rng.choice(len(emb), p=dist / dist.sum()))
        chosen.append(nxt)
        dist = np.minimum(dist, ((emb - emb[nxt]) ** 2).sum(1))
    return np.asarray(chosen)


# ---------------------------------------------------------------- which images; the threshold explorer

@dataclass
class ReviewSet:
    """What 07 reviews: predictions and their images, row for row, the file they came from, the model
    whose features place them, and where the reviewer's labels go."""

    preds: pd.DataFrame
    images: np.ndarray
    source: Path
    bundle: Path
    store: OverrideStore | VerifiedStore
    sort: str = "likely wrong"  # the order to review in (order_rows)

    @property
    def features_cache(self) -> Path:
        return self.source.with_name(self.source.stem + "_features.npy")


def review_set(layout: Layout, *, run: str, tag: str = "", queue: str = "", overrides_path: str = "",
               verified_path: str = "", who: str = "") -> ReviewSet:
    """A run's predictions, whose corrections go to the override file; or (queue "test") the test
    rows in 06's review queue, in its order (QUEUE_ORDER), whose labels become verified test labels."""
    bundle = layout.readable(layout.model_perf(run, tag))
    if queue == TEST_QUEUE:
        if not verified_path:
            raise ParameterError("verified_path", "is '': reviewing the test queue writes verified labels there")
        preds, images = test_queue_set(layout)
        return ReviewSet(preds, images, layout.test_queue, bundle,
                         VerifiedStore(resolve(verified_path), who=who or getpass.getuser(), queue=TEST_QUEUE),
                         sort=QUEUE_ORDER)
    source = layout.readable(layout.predictions(run, tag))
    store = OverrideStore(layout.overrides(overrides_path) or layout.data_dir_base / "overrides.csv",
                          source_file=str(source))
    return ReviewSet(read_annotations(source), open_images(images_for(layout, run, tag)), source, bundle, store)


def test_queue_set(layout: Layout) -> tuple[pd.DataFrame, np.ndarray]:
    """06's test-review queue as a predictions frame in queue order (the annotations, the runs' mean
    outputs, label quality), with its images."""
    queue = read_csv_file(layout.test_queue, missing="not found: run 06 first (it writes the test-review queue)")
    combined = read_annotations(layout.combined.ann)
    position = pd.Series(np.arange(len(combined)), index=combined["image_id"].to_numpy())
    unknown = ~queue["image_id"].isin(position.index)
    if unknown.any():
        raise InputError(layout.test_queue, f"image {queue['image_id'][unknown].iloc[0]!r} is not in "
                                            f"{layout.combined.ann}: run 06 again")
    rows = position.loc[queue["image_id"]].to_numpy()
    preds = combined.iloc[rows].reset_index(drop=True)
    preds[output_column(layout.scheme.negative)] = 1 - queue["mean positive score"].to_numpy()
    preds[output_column(layout.scheme.positive)] = queue["mean positive score"].to_numpy()
    preds["label_quality"] = queue["label_quality"].to_numpy()
    return preds, np.asarray(open_images(layout.combined.images)[rows])

def images_for(layout: Layout, run: str, tag: str = "") -> Path:
    """The images a run's predictions describe, row for row."""
    if run == "s_a":
        return layout.combined.images
    if run == "s_b":
        return layout.certain.images
    return layout.readable(layout.run_set(run, tag or CLASSIFIER).images)


def threshold_report(preds: pd.DataFrame, scheme: LabelScheme, thresholds: Sequence[float], *,
                     red_cells: RedCellCounts | None = None, rbc_per_ul: float = 5e6) -> pd.DataFrame:
    """threshold_summary of the positive class on the certain test rows, one row per threshold; with
    `red_cells` (the red cells imaged per slide) also the false positives per µl of the negative slides."""
    rows = split_rows(preds, "test")
    is_pos, scores = certain_scores(preds, scheme, rows)
    report = []
    for t in thresholds:
        row = threshold_summary(is_pos, scores, t)
        if red_cells is not None:
            row.update(slide_fp_summary(preds, scheme, rows, t, red_cells, rbc_per_ul))
        report.append(row)
    return pd.DataFrame(report).set_index("threshold")


def slide_fp_summary(preds: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray, threshold: float,
                     red_cells: RedCellCounts, rbc_per_ul: float) -> dict[str, float]:
    """At `threshold`, over the negative slides among the certain `rows`: how many, and the mean and
    largest false positives per µl of blood."""
    rows = np.asarray(rows)
    certain = scheme.certain_mask(round_annotations(preds["annotation"])[rows])
    is_pos, scores = certain_scores(preds, scheme, rows)
    if red_cells.key not in preds.columns:
        raise InputError(red_cells.path, f"column {red_cells.key!r} is not a column of the reviewed predictions")
    slides = preds[red_cells.key].astype(str).to_numpy()[rows][certain]
    return false_positives_summary(false_positives_per_ul(slides, is_pos, scores >= threshold, red_cells.in_test,
                                                          rbc_per_ul))
