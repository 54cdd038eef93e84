"""A second data set of real images: scikit-learn's 1,797 handwritten digits (8x8, shipped with
scikit-learn, no download) made into a two-class case shaped like the cell crops, so a recipe or a
curation chosen on the generated demo can be checked on real images.

"Parasite" is an odd digit. Each image is turned by a random quarter turn and mirrored at random,
so, as with a cell crop, no orientation carries the class, and some digits become truly ambiguous
(a 6 turned upside down is a 9). Each image's hardness is how split its nearest neighbours are
between odd and even (1 = a coin toss); the person's labels follow the demo's model: unsure mostly on
hard images, and a share of the certain labels flipped, uniformly or, for `systematic` noise, more
often the harder the image. The negative-control source is half of the even digits, labelled as
they are. The files match the demo's (patient/, neg/, truth.csv with a `slide` column of groups), so
the pipeline and the benchmarks run on them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

from ..core.atomic import OutputSet
from .demo import DemoSpec, source_labels, truth_rows
from .sets import Pair

SCALE = 2  # 8x8 digits drawn at 16x16 (nearest neighbour): room for the network's stride-2 stages
GROUP_SIZE = 100  # images per `slide` group


@dataclass(frozen=True)
class DigitsSpec:
    flip_frac: float = DemoSpec.flip_frac
    noise: str = DemoSpec.noise
    max_unsure_prob: float = DemoSpec.max_unsure_prob
    seed: int = 0

    def __post_init__(self) -> None:
        DemoSpec(flip_frac=self.flip_frac, noise=self.noise)  # the demo's checks: a ValueError naming the field


def turned_digits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every digit (N, 1, 16, 16) uint8, each under a random symmetry of the square, and its digit."""
    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    codes = rng.integers(0, 8, len(images))
    turned = np.stack([_symmetry(image, code) for image, code in zip(images, codes)])
    upscaled = turned.repeat(SCALE, axis=1).repeat(SCALE, axis=2)
    return np.ascontiguousarray(upscaled[:, None]), digits.target


def ambiguity(images: np.ndarray, is_odd: np.ndarray, k: int = 30) -> np.ndarray:
    """How ambiguous each image is between odd and even, in [0, 1]: 1 - |2p - 1| with p the share of
    odd digits among its k nearest other images, each weighted by exp(-d / median d) (d: the squared
    distance, the smallest over the other image's 8 symmetries), so a digit near the border between
    odd and even gets some hardness even when its nearest few agree (1 = a coin toss)."""
    flat = images.reshape(len(images), images.shape[-2], images.shape[-1]).astype(np.float32) / 255
    x = flat.reshape(len(flat), -1)
    distance = np.full((len(x), len(x)), np.inf, np.float32)
    for code in range(8):
        turned = np.stack([_symmetry(image, code) for image in flat]).reshape(len(flat), -1)
        d = (x**2).sum(1)[:, None] + (turned**2).sum(1)[None, :] - 2 * x @ turned.T
        distance = np.minimum(distance, d)
    np.fill_diagonal(distance, np.inf)
    neighbours = np.argpartition(distance, k, axis=1)[:, :k]
    near = np.take_along_axis(distance, neighbours, axis=1)
    weight = np.exp(-near / np.median(near))
    p = (weight * is_odd[neighbours]).sum(axis=1) / weight.sum(axis=1)
    return (1 - np.abs(2 * p - 1)).astype(np.float32)


def _symmetry(image: np.ndarray, code: int) -> np.ndarray:
    """Symmetry `code` (0-7) of one square image: `code % 4` quarter turns, mirrored when code >= 4."""
    turned = np.rot90(image, code % 4)
    return turned[:, ::-1] if code >= 4 else turned


def make_digits(out_dir: str | Path, spec: DigitsSpec = DigitsSpec()) -> dict[str, Path]:
    """Write `patient/`, `neg/` and `truth.csv` (as make_demo does) from the turned digits."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    images, digit = turned_digits(rng)
    truth = digit % 2 == 1
    hardness = ambiguity(images[:, :, ::SCALE, ::SCALE], truth)
    even = np.flatnonzero(~truth)
    negative_control = np.zeros(len(images), bool)
    negative_control[rng.choice(even, len(even) // 2, replace=False)] = True
    sources = {"patient": np.flatnonzero(~negative_control), "neg": np.flatnonzero(negative_control)}
    demo_like = DemoSpec(flip_frac=spec.flip_frac, noise=spec.noise, max_unsure_prob=spec.max_unsure_prob)
    sources_truth = []
    with OutputSet() as out:
        for name, rows in sources.items():
            pair = Pair(out_dir / name / f"{name}_combined_images.npy", out_dir / name / f"{name}_combined_ann.csv")
            rows = rng.permutation(rows)
            labels, flipped = source_labels(rng, truth[rows], hardness[rows], demo_like, annotated=name == "patient")
            out.npy(pair.images, images[rows].shape, images.dtype).append(images[rows])
            group = [f"{name}-{k:02d}" for k in np.arange(len(rows)) // GROUP_SIZE]
            out.csv(pd.DataFrame({"annotation": labels, "slide": group, "digit": digit[rows]}).rename_axis("index"),
                    pair.ann)
            sources_truth.append(truth_rows(pair, truth[rows], flipped, hardness[rows], spec.noise))
        out.csv(pd.concat(sources_truth, ignore_index=True).rename_axis("index"), out_dir / "truth.csv")
    return {"data_dir": out_dir / "patient", "data_dir_n": out_dir / "neg", "truth": out_dir / "truth.csv"}
