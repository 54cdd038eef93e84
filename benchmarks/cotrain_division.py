"""What co-training's division does, scored against the truth: per epoch, the flipped labels it takes
away, the true labels it takes away with them, and how often the pair's guess for the rows without a
label is right.

    .venv/bin/python benchmarks/cotrain_division.py SETTING_DIR [SETTING_DIR ...]
        [--variants default,restored_default] [--out benchmarks/results/cotrain_division.jsonl]

SETTING_DIR is a finished setting of benchmarks/curation.py with `s_cotrain` among its strategies, as
for benchmarks/cotrain_settings.py, whose variants (and `restored_` sets) it takes. For every
co-training epoch of the first network: `flipped rows` (trainable rows whose label is not the truth),
`flipped divided out` (the share of them that lost their label), `true divided out` (the share of the
rows with a true label that lost it), and `guess accuracy` (the share of the rows trained without a
label, the unsures and pruned labels among them, whose target's class is the truth). One JSON line
per (setting, variant); a rerun skips what is there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402
from cotrain_settings import RESTORED, SCHEME, VARIANTS, dataset, training_pair, variant_config  # noqa: E402

from helpers.data.sets import open_image_set  # noqa: E402
from helpers.data.truth import truth_lookup  # noqa: E402
from helpers.model.cotrain import Division, fit_cotrain  # noqa: E402


def epoch_scores(division: Division, targets: np.ndarray, given: np.ndarray, true_class: np.ndarray) -> dict:
    """One network's division and targets of an epoch against the true class of every row (class
    indices; `given` is -1 for the rows that never had a label)."""
    rows = np.union1d(division.labelled, division.unlabeled)
    train_rows = rows[given[rows] >= 0]
    lost = np.isin(train_rows, division.unlabeled)
    flipped = given[train_rows] != true_class[train_rows]
    unlabeled = division.unlabeled
    return {"labelled": int(len(division.labelled)), "unlabeled": int(len(unlabeled)),
            "flipped rows": int(flipped.sum()),
            "flipped divided out": float(lost[flipped].mean()) if flipped.any() else None,
            "true divided out": float(lost[~flipped].mean()),
            "guess accuracy": float((targets[unlabeled].argmax(1) == true_class[unlabeled]).mean())}


def measure(setting: Path, variant: str, work: Path) -> dict:
    """Co-train the setting's set with the variant's settings and score each epoch's division."""
    if VARIANTS[variant].get("unlabeled") != "cotrain":
        raise SystemExit(f"{variant}: not a co-training variant")
    image_set = open_image_set(training_pair(setting, variant, work / setting.parent.name / setting.name / variant),
                               SCHEME)
    seen: list[tuple[int, Division, np.ndarray]] = []  # the first network's division and targets, per epoch
    fit = fit_cotrain(image_set, SCHEME, variant_config(setting, variant),
                      observe=lambda epoch, divisions, targets: seen.append((epoch, divisions[0], targets[0])))
    names = fit.spec.class_names
    truth = truth_lookup(pd.read_csv(setting / "truth.csv"), image_set.ann["image_id"])
    true_class = np.array([names.index(name) for name in truth])
    epochs = [{"epoch": epoch + 1, **epoch_scores(division, targets, fit.data.targets, true_class)}
              for epoch, division, targets in seen]
    frame = pd.DataFrame(epochs)
    return {"setting": setting.name, "data": dataset(setting), "variant": variant, "settings": VARIANTS[variant],
            "restored": variant.startswith(RESTORED), "epochs": epochs,
            "first": epochs[0], "mean": {c: float(frame[c].mean()) for c in frame.columns if c != "epoch"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", type=Path, nargs="+")
    parser.add_argument("--variants", default="default,restored_default")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cotrain_division"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cotrain_division.jsonl")
    args = parser.parse_args()
    done = {(r["data"], r["setting"], r["variant"]) for r in read_lines(args.out)}
    for variant in args.variants.split(","):
        for setting in args.settings:
            if (dataset(setting), setting.name, variant) not in done:
                line = measure(setting, variant, args.work)
                append_line(args.out, line)
                print({k: v for k, v in line.items() if k != "epochs"}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
