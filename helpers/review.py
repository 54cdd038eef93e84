"""The logic behind interactive review, as plain functions (the widgets only call these).

Sorting and filtering predictions, paging, a label-override store that the pipeline applies
when combining (01_combine, parameter `overrides_path`), similar-image search on penultimate
features, a 2-D embedding, active-review sampling (seed 004), and the threshold explorer's numbers.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .datasets import flag_values
from .errors import InputError
from .evaluation import output_column, output_columns
from .io import OutputSet
from .labels import LabelScheme, round_annotations

SORTS = ("likely wrong", "score", "entropy", "label", "random")
OVERRIDE_FIELDS = ("label", "validation", "exclude")
OVERRIDE_COLUMNS = ["batch", "image_id", "field", "old", "new", "time", "source_file"]


# ---------------------------------------------------------------- scores

def probabilities(preds: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    cols = output_columns(preds)
    if not cols:
        raise InputError("predictions", "no '<class> output' columns: not an ann_with_predictions file")
    return preds[cols].to_numpy(dtype=float), [c[: -len(" output")] for c in cols]


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1)
    return -(p * np.log(p)).sum(axis=1)


def predicted_class(preds: pd.DataFrame) -> np.ndarray:
    probs, names = probabilities(preds)
    return np.asarray(names)[probs.argmax(axis=1)]


# ---------------------------------------------------------------- sort, filter, page

def order_rows(preds: pd.DataFrame, scheme: LabelScheme, sort: str = "likely wrong", class_name: str | None = None,
               descending: bool = True, seed: int = 0) -> np.ndarray:
    """Row numbers in review order.

    likely wrong: rows whose label disagrees with the prediction first, most confident first;
    score: a class's output; entropy: most uncertain first (descending); label; random (seeded).
    """
    n = len(preds)
    if sort == "random":
        return np.random.default_rng(seed).permutation(n)
    if sort == "label":
        key = round_annotations(preds["annotation"]).astype(float)
    elif sort == "entropy":
        key = entropy(probabilities(preds)[0])
    elif sort == "score":
        key = preds[output_column(class_name or scheme.positive)].to_numpy(dtype=float)
    elif sort == "likely wrong":
        probs, names = probabilities(preds)
        disagree = predicted_class(preds) != scheme.class_names(preds["annotation"])
        key = np.where(disagree, 1.0 + probs.max(axis=1), 0.0)  # disagreeing rows first, by confidence
        return np.argsort(-key, kind="stable")
    elif sort in preds.columns:  # any numeric column, e.g. label_quality
        key = preds[sort].to_numpy(dtype=float)
    else:
        raise ValueError(f"sort must be one of {SORTS} or a column, got {sort!r}")
    order = np.argsort(key, kind="stable")
    return order[::-1] if descending else order


def filter_rows(preds: pd.DataFrame, scheme: LabelScheme, rows: np.ndarray, label: str | None = None,
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


# ---------------------------------------------------------------- label overrides

class OverrideStore:
    """Appends label corrections (and validation / exclude flags) to a CSV, atomically.

    Columns: batch, image_id, field, old, new, time, source_file. One action (a button press over a
    selection) is one batch, so `undo` removes exactly the last action. The pipeline's own files are
    never touched; 01_combine applies the latest value per image and field.
    """

    def __init__(self, path: str | Path, source_file: str = ""):
        self.path, self.source_file = Path(path), str(source_file)

    def read(self) -> pd.DataFrame:
        if not self.path.is_file():
            return pd.DataFrame(columns=OVERRIDE_COLUMNS)
        table = pd.read_csv(self.path)
        missing = [c for c in OVERRIDE_COLUMNS if c not in table.columns]
        if missing:
            raise InputError(self.path, f"not a label-override file: missing columns {missing}")
        return table

    def _write(self, table: pd.DataFrame) -> None:
        with OutputSet() as out:
            table.to_csv(out.path(self.path), index=False)

    def add(self, image_ids: Sequence[str], old: Sequence, new, field: str = "label") -> int:
        """Record one action; returns its batch number."""
        if field not in OVERRIDE_FIELDS:
            raise ValueError(f"field must be one of {OVERRIDE_FIELDS}, got {field!r}")
        table = self.read()
        batch = int(table["batch"].max()) + 1 if len(table) else 1
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        rows = pd.DataFrame({"batch": batch, "image_id": list(image_ids), "field": field, "old": list(old),
                             "new": new, "time": now, "source_file": self.source_file})
        self._write(pd.concat([table, rows], ignore_index=True) if len(table) else rows)
        return batch

    def undo(self) -> int:
        """Remove the last action; returns how many rows it had (0 when there is nothing to undo)."""
        table = self.read()
        if not len(table):
            return 0
        last = table["batch"] == table["batch"].max()
        self._write(table[~last])
        return int(last.sum())

    def latest(self) -> pd.DataFrame:
        """The value in force per image and field."""
        table = self.read()
        return table.drop_duplicates(["image_id", "field"], keep="last")


def apply_overrides(ann: pd.DataFrame, overrides_path: str | Path, scheme: LabelScheme) -> tuple[pd.DataFrame, int]:
    """Annotations with the latest overrides applied (label -> annotation value; validation, exclude
    -> boolean columns). Unknown image_ids or labels are an error naming the overrides file."""
    store = OverrideStore(overrides_path)
    latest = store.latest()
    if not len(latest):
        return ann, 0
    ann = ann.copy()
    position = pd.Series(np.arange(len(ann)), index=ann["image_id"])
    unknown = latest.loc[~latest["image_id"].isin(position.index), "image_id"]
    if len(unknown):
        raise InputError(overrides_path, f"{len(unknown)} override(s) name images not in the combined set "
                                         f"(first: {unknown.iloc[0]})")
    for field, rows in latest.groupby("field"):
        at = position.loc[rows["image_id"]].to_numpy()
        if field == "label":
            values = rows["new"].map(lambda name: scheme.ann_dict.get(str(name)))
            if values.isna().any():
                raise InputError(overrides_path, f"label {rows['new'][values.isna()].iloc[0]!r} is not in the scheme "
                                                 f"{list(scheme.ann_dict)}")
            ann.loc[ann.index[at], "annotation"] = values.astype(float).to_numpy()
        else:
            if field not in ann.columns:
                ann[field] = False
            ann.loc[ann.index[at], field] = flag_values(rows["new"])
    return ann, len(latest)


# ---------------------------------------------------------------- similarity and embedding

def most_similar(features: np.ndarray, query: int, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the k images most similar to row `query` by cosine similarity (the query first)."""
    norm = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = norm @ norm[query]
    similarity[query] = np.inf  # the query itself always comes first
    rows = np.argsort(-similarity, kind="stable")[:k]
    scores = similarity[rows]
    scores[0] = 1.0
    return rows, scores


def embed_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the features: PCA, or UMAP when umap-learn is installed."""
    if method == "umap":
        try:
            import umap  # optional
        except ImportError:
            raise ValueError("method 'umap' needs the optional package umap-learn") from None
        return umap.UMAP(random_state=seed).fit_transform(features)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(features)


def in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which 2-D points lie inside a polygon (a lasso)."""
    from matplotlib.path import Path as PolyPath

    return PolyPath(polygon).contains_points(points)


# ---------------------------------------------------------------- active-review sampling (seed 004)

SAMPLERS = ("random", "max entropy", "class entropy", "high score", "badge")


def sample_for_review(preds: pd.DataFrame, method: str, k: int, class_name: str | None = None,
                      features: np.ndarray | None = None, candidates: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """The next k rows to review, chosen among `candidates` (default: all rows)."""
    candidates = np.arange(len(preds)) if candidates is None else np.asarray(candidates)
    k = min(k, len(candidates))
    probs, names = probabilities(preds)
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


# ---------------------------------------------------------------- threshold explorer

def threshold_summary(is_positive: np.ndarray, scores: np.ndarray, threshold: float,
                      rbc_per_ul: float = 5e6) -> dict:
    """Seed-003 numbers at one threshold plus the origin's false positives per microlitre:
    the false-positive rate among negative cells times the assumed red-cell count."""
    from .evaluation import threshold_table

    row = threshold_table(is_positive, scores, [threshold]).iloc[0].to_dict()
    negatives = row["FP"] + row["TN"]
    row["false positives per µl"] = row["FP"] / negatives * rbc_per_ul if negatives else float("nan")
    return {"threshold": float(threshold), **row}


# ---------------------------------------------------------------- which images, cached features

def images_for(layout, run: str, tag: str = "") -> "Path":
    """The images a run's predictions describe, row for row."""
    if run == "s_a":
        return layout.combined.images
    if run == "s_b":
        return layout.certain.images
    return layout.run_set(run, tag or "cl").images


def cached_features(bundle_path: Path, images: np.ndarray, cache_path: Path, batch_size: int = 512) -> np.ndarray:
    """Penultimate features of every image under a bundle's model, cached in a .npy beside the
    predictions (reused while the bundle and the number of images are unchanged)."""
    import json

    from .bundle import load_bundle
    from .io import file_checksum, write_json
    from .training import predict_features

    key = {"bundle": file_checksum(bundle_path), "rows": int(len(images))}
    meta = cache_path.with_suffix(".json")
    if cache_path.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
        return np.load(cache_path)
    features = predict_features(load_bundle(bundle_path).model, images, "cpu", batch_size)
    with OutputSet() as out:
        np.save(out.path(cache_path), features)
    write_json(key, meta)
    return features


# ---------------------------------------------------------------- static views for reports

def captions(preds: pd.DataFrame, rows: np.ndarray) -> list[str]:
    from .plots import short_id

    probs, names = probabilities(preds)
    return [f"{short_id(preds['image_id'].iloc[r]) if 'image_id' in preds else r}\nlabel {preds['annotation'].iloc[r]:g}"
            f" -> {names[int(probs[r].argmax())]} {probs[r].max():.2f}" for r in rows]


def test_rows(preds: pd.DataFrame) -> np.ndarray:
    return np.flatnonzero((preds["split"] == "test").to_numpy()) if "split" in preds.columns else np.arange(len(preds))


def threshold_report(preds: pd.DataFrame, scheme: LabelScheme, thresholds: Sequence[float],
                     rbc_per_ul: float = 5e6) -> pd.DataFrame:
    """threshold_summary of the positive class on the certain test rows, one row per threshold."""
    from .evaluation import certain_scores

    is_pos, scores = certain_scores(preds, scheme, test_rows(preds))
    return pd.DataFrame([threshold_summary(is_pos, scores, t, rbc_per_ul) for t in thresholds]).set_index("threshold")
