"""Which feature space and how many neighbours make the best neighbour flags, measured on finished runs.

    .venv/bin/python benchmarks/neighbour_flags.py --work /tmp/neighbours_bench [--settings uniform_0.2_seed0,...]
        [--k 30,60,120,240] [--out benchmarks/results/neighbour_flags.jsonl]

For every finished setting of benchmarks/curation.py in --work, SB's final model (no retraining)
gives each certain image its penultimate features twice: of the image alone, and the mean over its
test-time views (the 8 symmetries of the square). For each and each k, an image's neighbour agreement
is the share of its k nearest certain training images (cosine) that carry its label; the ranking by
disagreement is scored against the planted flips: average precision, recall at precision 0.85,
precision at recall 0.97, and precision and recall of the majority vote (agreement < 0.5). Cleanlab's
label quality on the same rows is scored beside them. One JSON line per setting; a rerun skips those
in --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import add_work_arguments, measure_new_settings, read_lines  # noqa: E402
from curation_bounds import flip_detection  # noqa: E402

from helpers.core.columns import test_mask  # noqa: E402
from helpers.core.labels import LabelScheme, round_annotations  # noqa: E402
from helpers.curation.label_issues import neighbour_agreement  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import open_image_set, read_annotations  # noqa: E402
from helpers.data.truth import read_truth, truth_lookup  # noqa: E402
from helpers.model.bundle import load_bundle  # noqa: E402
from helpers.model.inference import predict_features  # noqa: E402

SCHEME = LabelScheme.from_dict({"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1})


def scores(suspicion: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """flip_detection of a ranking (flagged: suspicion > 0.5) with its average precision, rounded."""
    found = flip_detection(suspicion, flipped, suspicion > 0.5)
    return {k: round(float(v), 4) for k, v in {"average precision": average_precision_score(flipped, suspicion),
                                               **found}.items()}


def measure(data: Path, ks: list[int]) -> dict:
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), SCHEME)
    predictions = read_annotations(layout.predictions("s_b"))
    image_set = open_image_set(layout.certain, SCHEME)
    if not (image_set.ann["image_id"].to_numpy() == predictions["image_id"].to_numpy()).all():
        raise SystemExit(f"{layout.predictions('s_b')}: rows do not match {layout.certain.ann}")
    rounded = round_annotations(predictions["annotation"])
    labels = np.where(np.isin(rounded, SCHEME.certain_values), rounded, -1)
    reference = (labels >= 0) & ~test_mask(predictions)
    rows = reference & np.isfinite(predictions["label_quality"].to_numpy(dtype=float))
    truth = read_truth(str(data / "truth.csv"), layout)
    flipped = (truth_lookup(truth, predictions["image_id"], "label_flipped") == True)[rows]  # noqa: E712 (NaN)
    model = load_bundle(layout.model_perf("s_b")).model
    out = {"cleanlab": scores(1 - predictions["label_quality"].to_numpy(dtype=float)[rows], flipped)}
    for space, view_mean in (("image", False), ("view mean", True)):
        features = predict_features(model, image_set.images, view_mean=view_mean)
        for k in ks:
            agreement = neighbour_agreement(features, labels, reference=reference, n_neighbors=k)
            out[f"{space}, k={k}"] = scores(1 - agreement[rows], flipped)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_work_arguments(parser)
    parser.add_argument("--k", default="30,60,120,240", help="neighbour counts to compare")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/neighbour_flags.jsonl")
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    measure_new_settings(args, args.out, lambda name: {"flags": measure(args.work / name, ks)})
    table = pd.DataFrame([{"setting": line["setting"].rsplit("_", 1)[0], "method": method, **values}
                          for line in read_lines(args.out) for method, values in line["flags"].items()])
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.groupby(["setting", "method"], sort=False).mean(numeric_only=True).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
