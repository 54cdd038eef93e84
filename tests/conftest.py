from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from notebook_runs import run_notebook

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme
from helpers.data.demo import DemoSpec, make_demo
from helpers.data.sets import Pair


@pytest.fixture
def scheme() -> LabelScheme:
    return LabelScheme.from_dict(DEFAULT_ANN_DICT)


TINY_DEMO = DemoSpec(n_patient=160, n_neg=80, size=15, seed=3)
TINY_TRAINING = dict(arch="resnet10", width=8, epochs=2, batch_size=64)


@pytest.fixture
def tiny_demo(tmp_path: Path) -> dict[str, Path]:
    """A small generated dataset: 160 patient + 80 negative crops of 4x15x15 (this test's own copy)."""
    return make_demo(tmp_path / "demo", TINY_DEMO)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> SimpleNamespace:
    """Notebooks 01, 02 and 03 (both baselines, tiny models) run once for the whole session on tiny
    demo data. Tests read what they wrote and run later notebooks into folders of their own."""
    root = tmp_path_factory.mktemp("tiny_pipeline")
    demo = make_demo(root / "demo", TINY_DEMO)
    base = root / "runs"
    dirs = dict(data_dir=str(demo["data_dir"]), data_dir_n=str(demo["data_dir_n"]), data_dir_base=str(base))
    notebooks = {"01_combine": run_notebook("01_combine", base / "reports", **dirs),
                 "02_split": run_notebook("02_split", base / "reports", **dirs),
                 "03_baselines_SA_SB": run_notebook("03_baselines_SA_SB", base / "reports", **dirs, **TINY_TRAINING)}
    return SimpleNamespace(demo=demo, dirs=dirs, base=base, notebooks=notebooks)


def write_set(folder: Path, stem: str, images: np.ndarray, annotations, **extra) -> Pair:
    """Write `<stem>_images.npy` + `<stem>_ann.csv` (annotation column plus extra columns)."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = Pair(folder / f"{stem}_images.npy", folder / f"{stem}_ann.csv")
    np.save(pair.images, images)
    pd.DataFrame({"annotation": annotations, **extra}).rename_axis("index").to_csv(pair.ann)
    return pair


def noisy_spots(folder: Path, n: int = 240, flip: float = 0.2, unlabeled: int = 40, seed: int = 0) -> tuple[Pair, np.ndarray]:
    """Class 1 has a bright spot at a random corner: `flip` of the labels are wrong, and the last
    `unlabeled` rows carry -1. The set and the true classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    images = rng.integers(0, 100, (n, 2, 9, 9)).astype(np.uint8)
    for i in np.flatnonzero(truth == 1):
        y, x = rng.choice([0, 6], 2)
        images[i, 0, y:y + 3, x:x + 3] = 250
    labels = truth.astype(float)
    flipped = rng.choice(n - unlabeled, int(flip * (n - unlabeled)), replace=False)
    labels[flipped] = 1 - labels[flipped]
    labels[n - unlabeled:] = -1
    return write_set(folder, "spots", images, labels), truth


def snapshot(folder: Path) -> dict[str, float]:
    """Every file below `folder` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
