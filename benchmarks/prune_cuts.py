"""What the neighbour vote's errors cost when pruning: the SB-to-oracle gap closed by where the vote
is cut, and by the vote with its false alarms or its misses taken away using the truth.

    .venv/bin/python benchmarks/prune_cuts.py --work /tmp/cb_u20 [--settings uniform_0.2_seed0,...]
        [--cuts 0.3,0.4,0.5,0.6,0.7] [--out benchmarks/results/prune_cuts.jsonl]

For every finished setting of benchmarks/curation.py in --work (run with `flag_by=neighbours`), SB's
recipe (parameters/recommended.yaml, the setting's seed) is trained again on its certain images, the
unsures left out as `s_prune` leaves them, once per pruned set:
- `cut C`: the images fewer than a share C of whose neighbours carry their label (0.5 is the vote
  `s_prune` prunes);
- `vote, true flips only`: the vote's flags that are planted flips (a detector with the vote's recall
  and no false alarms);
- `vote and every flip`: the vote's flags and the flips it missed (perfect recall, the vote's false
  alarms still pruned).
Each is scored on the setting's evaluation set (accuracy and share of the gap closed, as
benchmarks/curation.py scores runs), beside the pruned set's size, precision and recall on the flips.
The trained models stay in the setting's runs folder (`prune_<set>/`) and are reused; one JSON line
per setting, and a rerun skips those in --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import add_work_arguments, measure_new_settings, read_lines  # noqa: E402
from curation_bounds import SCHEME, eval_set_scores, train_recommended  # noqa: E402

from helpers.core.atomic import OutputSet  # noqa: E402
from helpers.core.columns import test_mask  # noqa: E402
from helpers.curation.wrong_labels import PRUNED_VALUE  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import Pair, read_annotations  # noqa: E402
from helpers.data.truth import read_truth, truth_lookup  # noqa: E402

VOTE = 0.5  # the cut the neighbour vote (is_neighbour_issue) makes


def pruned_sets(agreement: np.ndarray, flipped: np.ndarray, rows: np.ndarray, cuts: list[float]) -> dict[str, np.ndarray]:
    """Each pruned set as a mask over the certain images (only `rows`, the certain non-test ones, can be pruned)."""
    below = {cut: rows & (np.nan_to_num(agreement, nan=1.0) < cut) for cut in sorted({*cuts, VOTE})}
    return {**{f"cut {cut:g}": mask for cut, mask in below.items()},
            "vote, true flips only": below[VOTE] & flipped,
            "vote and every flip": below[VOTE] | (flipped & rows)}


def folder_name(name: str) -> str:
    return "prune_" + "".join(c if c.isalnum() else "_" for c in name)


def train_pruned(layout: Layout, ann: pd.DataFrame, prune: np.ndarray, name: str, seed: int) -> Path:
    """SB's recipe on the certain images with `prune` rows unlabeled (reused when already trained)."""
    folder = layout.run_dir(folder_name(name))
    bundle = folder / "model_perf.zip"
    if not bundle.is_file():
        pruned = ann.copy()
        pruned["annotation"] = np.where(prune, PRUNED_VALUE, ann["annotation"].to_numpy(dtype=float))
        pair = Pair(layout.certain.images, folder / "certain_ann_pruned.csv")
        with OutputSet() as out:
            out.csv(pruned, pair.ann)
        train_recommended(pair, seed, folder / "ann_with_predictions.csv", bundle)
    return bundle


def measure(data: Path, seed: int, cuts: list[float]) -> dict:
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), SCHEME)
    predictions = read_annotations(layout.predictions("s_b"))
    if "neighbour_agreement" not in predictions.columns:
        raise SystemExit(f"{layout.predictions('s_b')}: no neighbour_agreement column (run 03 with wrong_from: out_of_fold)")
    ann = read_annotations(layout.certain.ann)
    if not (ann["image_id"].to_numpy() == predictions["image_id"].to_numpy()).all():
        raise SystemExit(f"{layout.predictions('s_b')}: rows do not match {layout.certain.ann}")
    truth = read_truth(str(data / "truth.csv"), layout)
    flipped = (truth_lookup(truth, ann["image_id"], "label_flipped") == True)  # noqa: E712 (NaN)
    rows = SCHEME.certain_mask(ann["annotation"]) & ~test_mask(ann)
    sets = pruned_sets(predictions["neighbour_agreement"].to_numpy(dtype=float), flipped, rows, cuts)
    bundles = {"s_b": layout.model_perf("s_b"), "s_oracle": layout.model_perf("s_oracle")}
    bundles.update({name: train_pruned(layout, ann, prune, name, seed) for name, prune in sets.items()})
    out = eval_set_scores(data, bundles, seed)
    flips = int((flipped & rows).sum())
    for name, prune in sets.items():
        hits = int((prune & flipped).sum())
        out[name].update({"pruned": int(prune.sum()), "precision": round(hits / max(int(prune.sum()), 1), 4),
                          "recall": round(hits / max(flips, 1), 4)})
    return out


def summary(lines: list[dict]) -> pd.DataFrame:
    """Per noise kind, flip fraction and pruned set: gap closed per seed and its mean, precision, recall."""
    rows = [{"setting": line["setting"].rsplit("_", 1)[0], "seed": line["seed"], "set": name,
             "gap closed": scores.get("eval gap closed"), "precision": scores.get("precision"),
             "recall": scores.get("recall")}
            for line in lines for name, scores in line["eval"].items() if name not in ("s_b", "s_oracle")]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    grouped = frame.groupby(["setting", "set"], sort=False)
    return pd.DataFrame({"gap closed per seed": grouped["gap closed"].agg(lambda g: " / ".join(f"{100 * v:.0f}" for v in g)),
                         "mean gap closed": grouped["gap closed"].mean().mul(100).round(0),
                         "precision": grouped["precision"].mean().round(3), "recall": grouped["recall"].mean().round(3)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_work_arguments(parser)
    parser.add_argument("--cuts", default="0.3,0.4,0.5,0.6,0.7", help="neighbour-agreement cuts to prune below")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/prune_cuts.jsonl")
    args = parser.parse_args()
    cuts = [float(c) for c in args.cuts.split(",")]

    def row(name: str) -> dict:
        seed = int(name.rsplit("seed", 1)[1])
        return {"seed": seed, "cuts": cuts, "eval": measure(args.work / name, seed, cuts)}

    measure_new_settings(args, args.out, row)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(summary(read_lines(args.out)).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
