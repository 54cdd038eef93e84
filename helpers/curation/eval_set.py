"""Scoring runs on a large evaluation set with true labels (the demo generator's `eval/`, written by
`python -m helpers demo DIR --eval-size N`): every run's final model predicts crops the pipeline never
saw, and its accuracy against their true class resolves differences that ~1,100 noisy test rows
cannot. Benchmarks only: real data has no such set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.files import read_csv_file
from ..data.demo import EVAL_IMAGES, EVAL_TRUTH
from ..data.sets import open_images
from ..model.bundle import load_bundle, predict_with_bundle
from .compare import accuracy_interval, gap_closed, paired_gain_interval


def read_eval_set(folder: str | Path, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation crops the annotator would have called certain (as the test rows are) and whether
    each is truly `positive`; a missing or inconsistent set is an error naming the file."""
    folder = Path(folder)
    truth = read_csv_file(folder / EVAL_TRUTH, missing="evaluation set not found (python -m helpers demo DIR "
                                                         "--eval-size N writes it)")
    missing = {"truth", "unsure"} - set(truth.columns)
    if missing:
        raise InputError(folder / EVAL_TRUTH, f"not an evaluation truth file: missing columns {sorted(missing)}")
    images = open_images(folder / EVAL_IMAGES)
    if len(images) != len(truth):
        raise InputError(folder / EVAL_IMAGES, f"{len(images)} images but {len(truth)} rows in {EVAL_TRUTH}")
    certain = ~truth["unsure"].astype(bool).to_numpy()
    return np.asarray(images[certain]), (truth["truth"].to_numpy() == positive)[certain]


def eval_decisions(bundles: dict[str, Path], images: np.ndarray, positive: str, *,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Each run's call on every crop (True = positive): the class with the largest output, as the
    comparison scores the test rows (a 3-class model's 'unsure' counts as not positive)."""
    calls = {}
    for name, path in bundles.items():
        bundle = load_bundle(path)
        probs = predict_with_bundle(bundle, images, path, device=device)
        calls[name] = np.asarray(bundle.spec.class_names)[probs.argmax(axis=1)] == positive
    return calls


def eval_scores(calls: dict[str, np.ndarray], truth_pos: np.ndarray, *, n_bootstrap: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Per run: accuracy on the evaluation set with its bootstrap 95% interval, the gain over SB with
    its paired interval, and the share of the SB-to-oracle gap closed."""
    rows = {}
    sb_correct = calls["s_b"] == truth_pos if "s_b" in calls else None
    for name, call in calls.items():
        correct = call == truth_pos
        row = {"eval accuracy": float(correct.mean())}
        row["eval accuracy CI low"], row["eval accuracy CI high"] = accuracy_interval(correct.astype(float),
                                                                                      n_bootstrap, seed)
        if sb_correct is not None and name != "s_b":
            row["eval gain over SB"] = float(correct.mean() - sb_correct.mean())
            row["eval gain CI low"], row["eval gain CI high"] = paired_gain_interval(correct, sb_correct,
                                                                                     n_bootstrap, seed)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")
    table["eval gap closed"] = gap_closed(table["eval accuracy"])
    return table
