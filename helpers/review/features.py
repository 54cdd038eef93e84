"""Similar images and 2-D embeddings from a model's penultimate features (cached beside the predictions)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolyPath
from sklearn.decomposition import PCA

from ..core.atomic import OutputSet, write_json
from ..core.fingerprints import file_checksum
from ..model.bundle import load_bundle
from ..model.inference import predict_features


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
    return PCA(n_components=2, random_state=seed).fit_transform(features)


def in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which 2-D points lie inside a polygon (a lasso)."""
    return PolyPath(polygon).contains_points(points)


def cached_features(bundle_path: Path, images: np.ndarray, cache_path: Path, batch_size: int = 512, *,
                    rows_file: Path | None = None) -> np.ndarray:
    """Penultimate features of every image under a bundle's model, cached in a .npy beside the
    predictions (reused while the bundle, the number of images and `rows_file`, the file that says
    which images in which order, are unchanged)."""
    key = {"bundle": file_checksum(bundle_path), "rows": int(len(images))}
    if rows_file is not None:
        key["rows_file"] = file_checksum(rows_file)
    meta = cache_path.with_suffix(".json")
    if cache_path.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
        return np.load(cache_path)
    features = predict_features(load_bundle(bundle_path).model, images, "cpu", batch_size)
    with OutputSet() as out, open(out.path(cache_path), "wb") as f:
        np.save(f, features)  # to a file object: given a temp path without .npy, np.save writes elsewhere
    write_json(key, meta)
    return features
