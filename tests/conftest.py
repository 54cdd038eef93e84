from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.datasets import Pair
from helpers.demo import DemoSpec, make_demo
from helpers.labels import DEFAULT_ANN_DICT, LabelScheme


@pytest.fixture
def scheme() -> LabelScheme:
    return LabelScheme.from_dict(DEFAULT_ANN_DICT)


@pytest.fixture
def tiny_demo(tmp_path: Path) -> dict[str, Path]:
    """A small generated dataset: 160 patient + 80 negative crops of 4x15x15."""
    return make_demo(tmp_path / "demo", DemoSpec(n_patient=160, n_neg=80, size=15, seed=3))


def write_set(folder: Path, stem: str, images: np.ndarray, annotations, **extra) -> Pair:
    """Write `<stem>_images.npy` + `<stem>_ann.csv` (annotation column plus extra columns)."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = Pair(folder / f"{stem}_images.npy", folder / f"{stem}_ann.csv")
    np.save(pair.images, images)
    pd.DataFrame({"annotation": annotations, **extra}).rename_axis("index").to_csv(pair.ann)
    return pair


def snapshot(folder: Path) -> dict[str, float]:
    """Every file below `folder` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
