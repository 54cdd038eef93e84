"""Every figure of the notebooks and reports. Each function takes plain data and returns a
matplotlib Figure; this module imports nothing from helpers above `data`.

Figures are built without pyplot, so returning one from a cell shows it exactly once inline and
nothing accumulates in pyplot's global state across a long notebook.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .core.atomic import OutputSet
from .core.columns import output_probabilities


def message(text: str) -> Figure:
    """A figure that only says something, e.g. why a step did not apply."""
    fig = Figure(figsize=(7, 1.2))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return fig


def class_counts_bar(counts: pd.DataFrame, title: str = "Images per class") -> Figure:
    """Bar chart of a counts table: one group per row, one bar per column (or a single column)."""
    fig = Figure(figsize=(max(4, 1.2 * len(counts) + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    counts.plot.bar(ax=ax, rot=0, legend=counts.shape[1] > 1)
    ax.set_ylabel("images")
    ax.set_title(title)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    return fig


def to_display(images: np.ndarray) -> np.ndarray:
    """Float 0-1 view of uint8 (0-255) or float32 (0-1) images."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def image_grid(examples: Mapping[str, np.ndarray], channel_names: list[str] | None = None,
               title: str = "Example images per class") -> Figure:
    """One block of rows per class, one row per channel, one column per example image."""
    blocks = [(name, imgs) for name, imgs in examples.items() if len(imgs)]
    if not blocks:
        fig = Figure(figsize=(4, 1))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no images", ha="center", va="center")
        return fig
    n_channels = blocks[0][1].shape[1]
    n_cols = max(len(imgs) for _, imgs in blocks)
    channel_names = channel_names or [f"ch{c}" for c in range(n_channels)]
    n_rows = n_channels * len(blocks)
    fig = Figure(figsize=(0.9 * n_cols + 1.2, 0.9 * n_rows + 0.6))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for b, (name, imgs) in enumerate(blocks):
        shown = to_display(imgs)
        for c in range(n_channels):
            row = b * n_channels + c
            for col in range(n_cols):
                ax = axes[row, col]
                ax.set_xticks([]), ax.set_yticks([])
                if col < len(shown):
                    ax.imshow(shown[col, c], cmap="gray", vmin=0, vmax=max(shown[:, c].max(), 1e-6))
                else:
                    ax.axis("off")
            axes[row, 0].set_ylabel(f"{name}\n{channel_names[c]}" if c == 0 else channel_names[c],
                                    fontsize=8, rotation=0, ha="right", va="center")
    height = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.1 / height)
    fig.subplots_adjust(left=0.15, right=0.98, bottom=0.1 / height, top=1 - 0.45 / height, wspace=0.05, hspace=0.05)
    return fig


def sample_rows(n_rows: int, k: int, seed: int) -> np.ndarray:
    """Up to k distinct rows of n_rows, sorted, reproducible from seed."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=min(k, n_rows), replace=False)) if n_rows else np.array([], int)


def loss_curves(history: pd.DataFrame, title: str = "Loss per epoch") -> Figure:
    """Training and validation loss (left) and validation accuracy (right) per epoch."""
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    if len(history):
        ax_loss.plot(history["epoch"], history["train_loss"], marker=".", label="train (running)")
        ax_loss.plot(history["epoch"], history["val_loss"], marker=".", label="validation")
        best = history["val_loss"].idxmin()
        ax_loss.axvline(history["epoch"][best], color="grey", ls=":", label=f"best epoch {history['epoch'][best]}")
        ax_acc.plot(history["epoch"], history["val_accuracy"], marker=".", color="C2")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=title)
    ax_loss.legend(fontsize=8)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy", ylim=(0, 1.02))
    return fig


def confusion_matrices(metrics_by_split: Mapping[str, dict], title: str = "Confusion matrix") -> Figure:
    """Counts and row-normalised matrices, one pair per split (e.g. {'val': ..., 'test': ...})."""
    present = [(name, m) for name, m in metrics_by_split.items() if m.get("rows")]
    fig = Figure(figsize=(7.5, 3.3 * max(1, len(present))), layout="constrained")
    if not present:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no rows to score", ha="center")
        return fig
    axes = fig.subplots(len(present), 2, squeeze=False)
    for (split, m), row in zip(present, axes):
        labels = m["confusion_matrix"]["labels"]
        counts = np.asarray(m["confusion_matrix"]["counts"], float)
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        for ax, data, kind in ((row[0], counts, "counts"), (row[1], norm, "row-normalised")):
            ax.imshow(data, cmap="Blues", vmin=0)
            for (i, j), v in np.ndenumerate(data):
                ax.text(j, i, f"{v:.0f}" if kind == "counts" else f"{v:.2f}", ha="center", va="center",
                        color="white" if v > data.max() / 2 else "black", fontsize=9)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
            ax.set(xlabel="predicted", ylabel="annotated",
                   title=f"{title} · {split} ({kind}, acc {m['accuracy']:.3f})")
    return fig


def score_histograms(predictions: pd.DataFrame, score_column: str, group: pd.Series,
                     title: str = "", bins: int = 30) -> Figure:
    """Histogram of one output column, one overlaid histogram per group (e.g. annotated class)."""
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    for name in group.dropna().unique():
        ax.hist(predictions.loc[group == name, score_column], bins=bins, range=(0, 1), alpha=0.55,
                label=f"{name} ({int((group == name).sum())})")
    ax.set(xlabel=score_column, ylabel="images", title=title or f"{score_column} by group", yscale="log")
    ax.legend(fontsize=8)
    return fig


def composite(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, 3) display images: first three channels as RGB, or grey."""
    x = to_display(images)
    if x.shape[1] >= 3:
        rgb = x[:, [2, 1, 0]]  # the origin stores B, G, R first: show them as R, G, B
    else:
        rgb = np.repeat(x[:, :1], 3, axis=1)
    lo = np.percentile(rgb, 1, axis=(2, 3), keepdims=True)  # per image and channel contrast stretch
    hi = np.percentile(rgb, 99.5, axis=(2, 3), keepdims=True)
    rgb = np.clip((rgb - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    return np.transpose(rgb, (0, 2, 3, 1))


def short_id(image_id: str, width: int = 14) -> str:
    """`patient_combined_images:803` -> `patient_co…:803` so captions stay readable."""
    stem, _, row = str(image_id).rpartition(":")
    return f"{stem[:width - 4]}…:{row}" if stem and len(stem) > width - 3 else str(image_id)


def labelled_grid(images: np.ndarray, captions: list[str], title: str = "", n_cols: int = 8) -> Figure:
    """Images as false-colour composites with a caption under each."""
    n = len(images)
    if n == 0:
        fig = Figure(figsize=(4, 1))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: no images", ha="center", va="center")
        return fig
    n_cols = min(n_cols, n)
    n_rows = int(np.ceil(n / n_cols))
    fig = Figure(figsize=(1.45 * n_cols, 1.65 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    shown = composite(images)
    for ax, img, caption in zip(axes, shown, captions):
        ax.imshow(img)
        ax.set_title(caption, fontsize=6.5)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(title)
    return fig


def captions(predictions: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """`image_id`, label and prediction of each row, for captions under thumbnails."""
    probs, names = output_probabilities(predictions)
    ids = predictions["image_id"] if "image_id" in predictions else None
    return [f"{short_id(ids.iloc[r]) if ids is not None else r}\nlabel {predictions['annotation'].iloc[r]:g}"
            f" -> {names[int(probs[r].argmax())]} {probs[r].max():.2f}" for r in rows]


def lowest_scores_grid(images: np.ndarray, predictions: pd.DataFrame, scores: np.ndarray, k: int, title: str) -> Figure:
    """The k images with the lowest (finite) score, lowest first, captioned."""
    candidates = np.flatnonzero(np.isfinite(scores))
    rows = candidates[np.argsort(scores[candidates], kind="stable")[:k]]
    return labelled_grid(np.asarray(images[rows]), captions(predictions, rows), title=title)


def comparison_chart(table: pd.DataFrame, column: str, ci_prefix: str, *, pick: str | None = None,
                     baselines: Sequence[str] = ("s_a", "s_b"), references: Sequence[str] = ("s_oracle",)) -> Figure:
    """`column` of every run with its bootstrap interval (`<ci_prefix> CI low/high`); runs that did not
    apply are labelled. The `baselines` are drawn blue, `references` (the oracle) grey, every strategy
    orange; the verdict's `pick` is outlined and starred."""
    fig = Figure(figsize=(max(5, 0.8 * len(table) + 2), 3.4), layout="constrained")
    ax = fig.subplots()
    names = list(table.index)
    ok = table["status"] == "ok"
    values = table[column].where(ok).astype(float).fillna(0) if column in table else pd.Series(0.0, index=table.index)
    colors = ["C0" if n in baselines else "0.6" if n in references else "C1" for n in names]
    bars = ax.bar(names, values, color=colors)
    if pick in names:
        bars[names.index(pick)].set(edgecolor="black", linewidth=2)
        ax.annotate("★ verdict", (names.index(pick), float(values[pick])), textcoords="offset points", xytext=(0, 12),
                    ha="center", fontsize=9)
    if f"{ci_prefix} CI low" in table:
        lo, hi = table[f"{ci_prefix} CI low"].astype(float), table[f"{ci_prefix} CI high"].astype(float)
        ax.errorbar(names, values, yerr=[np.maximum(values - lo.fillna(values), 0), np.maximum(hi.fillna(values) - values, 0)],
                    fmt="none", color="black", capsize=3)
    for i, n in enumerate(names):
        if not ok[n]:
            ax.text(i, 0.02, table.loc[n, "status"], rotation=90, ha="center", va="bottom", fontsize=8)
    finite = values[ok & (values > 0)]
    ax.set_ylim(max(0.0, float(finite.min()) - 0.1) if len(finite) else 0, 1.0)
    ax.set(ylabel=f"test {column}", title=f"Test {column} per run, on verified labels where they exist (baselines "
                                          "blue, strategies orange, oracle grey; 95% bootstrap CI)")
    return fig


def embedding_scatter(points: np.ndarray, labels: np.ndarray, order: list[str], title: str = "PCA of penultimate features",
                      scores: np.ndarray | None = None) -> Figure:
    """2-D embedding coloured by label, or by a 0-1 score when `scores` is given."""
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    if scores is None:
        for name in order:
            hit = labels == name
            if hit.any():
                ax.scatter(*points[hit].T, s=6, alpha=0.6, label=f"{name} ({int(hit.sum())})")
        ax.legend(fontsize=8, markerscale=2)
    else:
        sc = ax.scatter(*points.T, s=6, c=scores, cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(sc, ax=ax, label="score")
    ax.set(title=title, xticks=[], yticks=[])
    return fig


def review_efficiency_curve(curve: pd.DataFrame, title: str = "Flipped labels found per share reviewed") -> Figure:
    """Share of the flipped labels found against the share of images reviewed, one line per ranking,
    with the perfect order and random as dashed bounds."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    x = curve.index.to_numpy() * 100
    for name in curve.columns:
        bound = name in ("perfect", "random")
        ax.plot(x, curve[name] * 100, linestyle="--" if bound else "-", color="grey" if bound else None,
                linewidth=1 if bound else 1.8, label=name)
    ax.set(xlabel="images reviewed, most suspect first (%)", ylabel="flipped labels found (%)", title=title,
           xlim=(0, 100), ylim=(0, 101))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def gap_closed_by_noise(series: Mapping[str, pd.Series], title: str = "Share of the SB-to-oracle gap closed",
                        labels: Mapping[str, pd.Series] | None = None) -> Figure:
    """One line per noise kind: the share of the gap closed (y) against the flip fraction (x), each
    point captioned with its entry in `labels` (e.g. which strategy) when given."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, values in series.items():
        values = values.sort_index()
        ax.plot(values.index * 100, values.to_numpy() * 100, marker="o", label=name)
        for x, y in values.items():
            if labels is not None and np.isfinite(y):
                ax.annotate(str(labels[name][x]), (x * 100, y * 100), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    ax.axhline(0, color="grey", linewidth=1, linestyle="--")
    ax.axhline(50, color="grey", linewidth=1, linestyle=":")
    ax.set(xlabel="labels flipped (%)", ylabel="gap closed (%)", title=title)
    ax.legend(title="noise")
    return fig


def gap_closed_with_intervals(frame: pd.DataFrame, title: str = "Share of the SB-to-oracle gap closed") -> Figure:
    """Grouped bars: per setting (x) one bar per strategy, its mean share of the gap closed with the
    95% interval over seeds as an error bar. `frame`: columns setting, strategy, gap, low, high."""
    settings, strategies = list(dict.fromkeys(frame["setting"])), list(dict.fromkeys(frame["strategy"]))
    fig = Figure(figsize=(1.6 + 1.5 * len(settings), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(strategies), 1)
    for k, name in enumerate(strategies):
        rows = frame[frame["strategy"] == name].set_index("setting").reindex(settings)
        x = np.arange(len(settings)) + (k - (len(strategies) - 1) / 2) * width
        gap = rows["gap"].to_numpy(dtype=float) * 100
        err = np.abs(np.vstack([gap - rows["low"].to_numpy(dtype=float) * 100,
                                rows["high"].to_numpy(dtype=float) * 100 - gap]))
        ax.bar(x, gap, width, yerr=np.nan_to_num(err), capsize=3, label=name)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(np.arange(len(settings)), settings, fontsize=8)
    ax.set(ylabel="gap closed (%), 95% interval over seeds", title=title)
    ax.legend(fontsize=8)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write a figure as a PNG, atomically."""
    with OutputSet() as out:
        fig.savefig(out.path(path), format="png", dpi=110, bbox_inches="tight")
    return path
