"""Figures for the notebooks and reports. Every function returns a matplotlib Figure.

Figures are built without pyplot, so returning one from a cell shows it exactly once inline and
nothing accumulates in pyplot's global state across a long notebook.
"""
from __future__ import annotations

from typing import Mapping


import numpy as np
import pandas as pd
from matplotlib.figure import Figure


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
