"""Who the neighbour vote flags wrongly, and who it misses: each error's given label, its hardness,
and whether the clean-label oracle gets that image wrong too.

    .venv/bin/python benchmarks/flag_errors.py --work /tmp/cb_u20 [--settings uniform_0.2_seed0,...]
        [--out benchmarks/results/flag_errors.jsonl]

For every finished setting of benchmarks/curation.py in --work (run with `flag_by=neighbours`), on
the rows flip finding is scored on (certain, non-test): the vote's false alarms (flagged, label
right) and misses (a planted flip not flagged), counted by the label they carry, their mean
hardness (the generator's: how faint the parasite or how parasite-like the distractor) against the
clean rows', and how many of them the oracle calls wrongly as well: it trained on these very images
with their true classes, so an image it still gets wrong is one whose class the crop barely shows. Reads the setting's files
only (no training); one JSON line per setting, and a rerun skips those in --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import add_work_arguments, measure_new_settings  # noqa: E402
from curation_bounds import SCHEME  # noqa: E402

from helpers.core.columns import flag_values, output_column  # noqa: E402
from helpers.core.labels import round_annotations  # noqa: E402
from helpers.curation.label_issues import flip_rows  # noqa: E402
from helpers.data.sets import read_annotations  # noqa: E402
from helpers.data.truth import truth_lookup  # noqa: E402


def error_counts(errors: np.ndarray, labels: np.ndarray, hardness: np.ndarray, oracle_wrong: np.ndarray) -> dict:
    """How many rows `errors` marks, per given label, their mean hardness and how many the oracle gets wrong."""
    return {"rows": int(errors.sum()),
            **{f"labelled {SCHEME.name_of(v)}": int((errors & (labels == v)).sum()) for v in SCHEME.certain_values},
            "mean hardness": round(float(hardness[errors].mean()), 3) if errors.any() else None,
            "oracle wrong": int((errors & oracle_wrong).sum())}


def measure(data: Path) -> dict:
    """The vote's false alarms and misses in one setting, beside the clean rows they are drawn from."""
    runs = data / "runs"
    sb = read_annotations(runs / "s_b" / "ann_with_predictions.csv")
    truth = pd.read_csv(data / "truth.csv")
    rows, flipped = flip_rows(sb, truth, SCHEME)
    oracle = read_annotations(runs / "s_oracle" / "ann_with_predictions.csv").set_index("image_id")
    oracle_positive = oracle.loc[sb["image_id"], output_column(SCHEME.positive)].to_numpy() >= 0.5
    truly_positive = truth_lookup(truth, sb["image_id"]) == SCHEME.positive
    oracle_wrong = oracle_positive != truly_positive
    hardness = truth_lookup(truth, sb["image_id"], "hardness").astype(float)
    labels = round_annotations(sb["annotation"])
    flagged = flag_values(sb["is_neighbour_issue"])
    clean = rows & ~flipped
    return {"scored rows": int(rows.sum()), "flips": int((rows & flipped).sum()),
            "false alarms": error_counts(clean & flagged, labels, hardness, oracle_wrong),
            "misses": error_counts(rows & flipped & ~flagged, labels, hardness, oracle_wrong),
            "clean rows": error_counts(clean, labels, hardness, oracle_wrong)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_work_arguments(parser)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/flag_errors.jsonl")
    args = parser.parse_args()
    measure_new_settings(args, args.out, lambda name: measure(args.work / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
