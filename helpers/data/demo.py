"""Synthetic demo data with hidden truth, shaped like the origin's blood-cell crops.

Each crop shows a cell body in the last channel (DPC-like). True parasites carry a small spot in
the first two (fluorescence) channels; some non-parasites carry a dimmer, more diffuse
"distractor" spot that is mostly in the first channel. Weak parasites and strong distractors are
the hard, ambiguous images: those are the ones mostly labelled "unsure". A share `flip_frac` of
the certain labels is flipped: `uniform` noise flips any of them at random; `systematic` noise
flips as people err on these crops, faint parasites called non-parasite and bright distractors
called parasite, more often the harder the image. `truth.csv` records the true class of every
image, which labels were flipped, and the noise kind.

Crops come from slides (column `slide`, about `slide_size` crops each): every slide has its own
stain (a gain per fluorescence channel), brightness and parasitaemia, as a real patient's slide
does, so a model can learn a slide's look; a test split that keeps slides whole (`group_by:
slide`) shows what that is worth on a slide it has never seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import OutputSet
from ..core.labels import DEFAULT_ANN_DICT
from .sets import Pair


@dataclass(frozen=True)
class DemoSpec:
    n_patient: int = 4000
    n_neg: int = 2000
    channels: int = 4
    size: int = 31
    parasite_frac: float = 0.3
    # People's errors at a level where curation matters: the clean-label oracle is 1-2 points above
    # SB against the truth here (benchmarks/curation.py, seeds 0-2); uniform 3% left no gap to close.
    flip_frac: float = 0.10
    noise: str = "systematic"  # or "uniform"
    max_unsure_prob: float = 0.7
    slide_size: int = 250  # crops per slide, about
    seed: int = 0

    def __post_init__(self) -> None:
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {list(NOISE_KINDS)}, got {self.noise!r}")
        if not 0 <= self.flip_frac <= 0.5:
            raise ValueError(f"flip_frac must be in [0, 0.5], got {self.flip_frac!r}")


NOISE_KINDS = ("uniform", "systematic")


def _spots(rng: np.random.Generator, n: int, size: int, radius: np.ndarray, sigma: float) -> np.ndarray:
    """(n, size, size) gaussian spots at random positions inside each cell."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n)
    dist = rng.uniform(0, np.maximum(radius - 3, 1))
    cy = size / 2 + dist * np.sin(angle)
    cx = size / 2 + dist * np.cos(angle)
    d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def slide_looks(rng: np.random.Generator, n_slides: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slide: a stain gain for every channel but the last (DPC-like) one (a common strength times
    a small per-channel tint) and a brightness offset; mild enough that the true class stays readable."""
    gain = np.ones((n_slides, channels), np.float32)
    strength = rng.uniform(0.88, 1.12, (n_slides, 1))
    gain[:, :-1] = strength * rng.uniform(0.96, 1.04, (n_slides, channels - 1))
    return gain, rng.uniform(-5, 5, n_slides).astype(np.float32)


def render(rng: np.random.Generator, truth_parasite: np.ndarray, spec: DemoSpec,
           slide: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, C, S, S) uint8 and the hardness in [0, 1] of each; with `slide` (a slide index per
    image) each slide's stain and brightness applied."""
    n, c, s = len(truth_parasite), spec.channels, spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    images = rng.normal(30, 6, size=(n, c, s, s)).astype(np.float32)
    radius = rng.uniform(8, 12, n).astype(np.float32)
    cell = ((yy[None] - s / 2) ** 2 + (xx[None] - s / 2) ** 2) < radius[:, None, None] ** 2
    images[:, -1] += 60 + 50 * cell  # cell body in the last (DPC-like) channel
    images[:, :-1] += 6 * cell[:, None]  # faint autofluorescence

    strength = rng.uniform(0.1, 1.0, n).astype(np.float32)
    parasite_spot = _spots(rng, n, s, radius, sigma=1.2) * (70 * strength)[:, None, None]
    has_distractor = rng.random(n) < 0.5
    distractor_strength = rng.uniform(0.05, 0.7, n).astype(np.float32)
    distractor = _spots(rng, n, s, radius, sigma=1.8) * (60 * distractor_strength)[:, None, None]

    p = truth_parasite
    fluo = [0, 1] if c > 2 else [0]
    for k, ch in enumerate(fluo):
        images[p, ch] += parasite_spot[p]
        images[~p & has_distractor, ch] += distractor[~p & has_distractor] * (1.0 if k == 0 else 0.35)

    hardness = np.where(p, 1 - strength, np.where(has_distractor, distractor_strength / 0.7, 0.0))
    if slide is not None:
        gain, offset = slide_looks(rng, int(slide.max()) + 1, c)
        images = images * gain[slide][:, :, None, None] + offset[slide][:, None, None, None]
    return np.clip(images, 0, 255).astype(np.uint8), hardness.astype(np.float32)


def noisy_labels(rng: np.random.Generator, truth_parasite: np.ndarray, hardness: np.ndarray,
                 spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """A person's labels: unsure mostly for hard images, a few certain labels flipped."""
    labels = truth_parasite.astype(np.float64)  # 1 parasite, 0 non-parasite
    p_unsure = np.clip((hardness - 0.45) / 0.55, 0, 1) * spec.max_unsure_prob
    unsure = rng.random(len(labels)) < p_unsure
    draw = rng.random(len(labels))  # one draw per image whatever the noise kind: uniform stays as it was
    flip_prob = spec.flip_frac if spec.noise == "uniform" else systematic_flip_prob(hardness, ~unsure, spec.flip_frac)
    flipped = (draw < flip_prob) & ~unsure
    labels[flipped] = 1 - labels[flipped]
    labels[unsure] = DEFAULT_ANN_DICT["unsure"]
    return labels, flipped


def source_labels(rng: np.random.Generator, truth_parasite: np.ndarray, hardness: np.ndarray, spec: DemoSpec,
                  annotated: bool) -> tuple[np.ndarray, np.ndarray]:
    """A source's label values and which were flipped: a person's (noisy_labels) for an annotated
    source, the true classes, none flipped, for one that came labelled (a negative control)."""
    if annotated:
        return noisy_labels(rng, truth_parasite, hardness, spec)
    return truth_parasite.astype(np.float64), np.zeros(len(truth_parasite), bool)


def systematic_flip_prob(hardness: np.ndarray, certain: np.ndarray, flip_frac: float) -> np.ndarray:
    """Per-image flip probability proportional to hardness (zero for easy images: a non-parasite with
    no distractor is never called parasite), scaled so the certain images' mean is `flip_frac`."""
    if flip_frac == 0 or not certain.any() or hardness[certain].sum() == 0:
        return np.zeros(len(hardness))
    scale = flip_frac / hardness[certain].mean()
    for _ in range(50):  # probabilities are capped at 1: raise the scale until the mean is met
        prob = np.minimum(1.0, scale * hardness)
        mean = prob[certain].mean()
        if mean >= flip_frac * 0.999 or (prob[certain] == 1).all():
            break
        scale *= flip_frac / mean
    return prob


@dataclass
class DrawnSource:
    """One source's crops as the generator drew them, with what the files record about each."""

    images: np.ndarray  # (n, C, S, S) uint8
    truth: np.ndarray  # True = parasite
    labels: np.ndarray  # the person's (or, unannotated, the true) label values; unsure = 2
    flipped: np.ndarray
    hardness: np.ndarray
    slide: np.ndarray  # slide index per crop
    fov: np.ndarray  # field of view per crop


def draw_source(rng: np.random.Generator, n: int, parasite_frac: float, spec: DemoSpec,
                annotated: bool) -> DrawnSource:
    """One source, slide by slide; `annotated` sources were labelled by a person, the others came
    labelled (a negative control)."""
    n_slides = max(2, n // spec.slide_size)
    slide = np.sort(rng.integers(0, n_slides, n))
    parasitaemia = np.minimum(parasite_frac * rng.uniform(0.3, 1.7, n_slides), 0.95)  # one patient's, per slide
    truth = rng.random(n) < parasitaemia[slide]
    images, hardness = render(rng, truth, spec, slide)
    labels, flipped = source_labels(rng, truth, hardness, spec, annotated)
    fov = np.sort(rng.integers(0, max(1, n // 200), n))  # extra column: field of view, kept through the pipeline
    return DrawnSource(images, truth, labels, flipped, hardness, slide, fov)


TRUE_CLASS = {1: "parasite", 0: "non-parasite"}


CHUNK_CROPS = 50_000  # a larger source is drawn in chunks of this many (each from its own child stream)


def _write_source(out: OutputSet, pair: Pair, rng: np.random.Generator, n: int, parasite_frac: float,
                  spec: DemoSpec, annotated: bool) -> pd.DataFrame:
    """Draw one source and write its images and annotations; returns its rows of the truth file.
    Up to CHUNK_CROPS crops are drawn at once; a larger source chunk by chunk, each chunk with its
    own slides and its own child of `rng`, so memory stays that of one chunk (a million crops)."""
    stem = pair.images.stem.split("_")[0]
    writer = out.npy(pair.images, (n, spec.channels, spec.size, spec.size), np.uint8)
    ann, drawn_parts = [], []
    for chunk_rng, size, prefix in _chunks(rng, n):
        drawn = draw_source(chunk_rng, size, parasite_frac, spec, annotated)
        writer.append(drawn.images)
        ann.append(pd.DataFrame({"annotation": drawn.labels, "slide": [f"{stem}-{prefix}{k:02d}" for k in drawn.slide],
                                 "fov": drawn.fov}))
        drawn_parts.append((drawn.truth, drawn.flipped, drawn.hardness))
    out.csv(pd.concat(ann, ignore_index=True).rename_axis("index"), pair.ann)
    truth, flipped, hardness = (np.concatenate(column) for column in zip(*drawn_parts))
    return truth_rows(pair, truth, flipped, hardness, spec.noise)


def _chunks(rng: np.random.Generator, n: int) -> list[tuple[np.random.Generator, int, str]]:
    """(stream, crops, slide-name prefix) per chunk: `rng` itself for a source of up to CHUNK_CROPS,
    else as many near-equal chunks as needed, each with its own child stream."""
    if n <= CHUNK_CROPS:
        return [(rng, n, "")]
    k = -(-n // CHUNK_CROPS)
    return [(child, n // k + (i < n % k), f"c{i:03d}-") for i, child in enumerate(rng.spawn(k))]


def truth_rows(pair: Pair, truth_parasite: np.ndarray, flipped: np.ndarray, hardness: np.ndarray,
               noise: str) -> pd.DataFrame:
    """One source's rows of `truth.csv`: image_id, true class, whether its label was flipped, hardness, noise kind."""
    return pd.DataFrame({
        "image_id": [f"{pair.images.stem}:{i}" for i in range(len(truth_parasite))],
        "truth": [TRUE_CLASS[int(t)] for t in truth_parasite],
        "label_flipped": flipped,
        "hardness": np.round(hardness, 3),
        "noise": noise,
    })


def make_demo(out_dir: str | Path, spec: DemoSpec = DemoSpec()) -> dict[str, Path]:
    """Write `patient/`, `neg/` (the origin's two sources) and `truth.csv` into `out_dir`."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    patient = Pair(out_dir / "patient" / "patient_combined_images.npy", out_dir / "patient" / "patient_combined_ann.csv")
    neg = Pair(out_dir / "neg" / "neg_combined_images.npy", out_dir / "neg" / "neg_combined_ann.csv")
    with OutputSet() as out:
        truth = pd.concat([
            _write_source(out, patient, rng, spec.n_patient, spec.parasite_frac, spec, annotated=True),
            _write_source(out, neg, rng, spec.n_neg, 0.0, spec, annotated=False),
        ], ignore_index=True)
        out.csv(truth.rename_axis("index"), out_dir / "truth.csv")
    return {"data_dir": patient.images.parent, "data_dir_n": neg.images.parent, "truth": out_dir / "truth.csv"}


EVAL_STREAM = 1  # the evaluation set's own random stream: the demo data never change with it
EVAL_DIR, EVAL_IMAGES, EVAL_TRUTH = "eval", "eval_images.npy", "eval_truth.csv"


def make_eval_set(folder: str | Path, spec: DemoSpec = DemoSpec(), n: int = 20_000) -> Path:
    """Write `n` more crops from the same generator into `folder` (`eval_images.npy`, `eval_truth.csv`):
    new slides, the demo's mix of sources, each crop's true class and whether its annotator would have
    called it unsure. The pipeline never reads them: a run scored on them is scored on the truth, with
    far less sampling noise than ~1,100 test rows."""
    if n < 2:
        raise ValueError(f"the evaluation set needs at least 2 crops, got {n}")
    folder = Path(folder)
    rng = np.random.default_rng((spec.seed, EVAL_STREAM))
    n_patient = round(n * spec.n_patient / (spec.n_patient + spec.n_neg))
    sources = {"patient": draw_source(rng, n_patient, spec.parasite_frac, spec, annotated=True),
               "neg": draw_source(rng, n - n_patient, 0.0, spec, annotated=False)}
    truth = pd.concat([pd.DataFrame({"truth": [TRUE_CLASS[int(t)] for t in drawn.truth],
                                     "unsure": drawn.labels == DEFAULT_ANN_DICT["unsure"],
                                     "hardness": drawn.hardness.round(3), "source": name,
                                     "slide": [f"eval-{name}-{k:02d}" for k in drawn.slide]})
                       for name, drawn in sources.items()], ignore_index=True)
    truth.insert(0, "image_id", [f"eval:{i}" for i in range(n)])
    images = np.concatenate([drawn.images for drawn in sources.values()])
    with OutputSet() as out:
        out.npy(folder / EVAL_IMAGES, images.shape, images.dtype).append(images)
        out.csv(truth.rename_axis("index"), folder / EVAL_TRUTH)
    return folder
