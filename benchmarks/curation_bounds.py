"""How much of the SB-to-oracle gap a perfect flip detector could close: the bound on pruning and fixing.

    .venv/bin/python benchmarks/curation_bounds.py --work /tmp/foldgroups_bench [--settings systematic_0.2_seed0,...]
        [--out benchmarks/results/curation_bounds.jsonl]

For every finished setting of benchmarks/curation.py in --work (its demo data, SB and the oracle), SB
is trained twice more with the same recipe and seed on its own rows (the certain, non-test crops;
unsures left out), once with every planted flip removed (`prune_oracle`: a detector that finds all
flips and nothing else, then prunes) and once with every flip set back to its true class
(`fix_oracle`: the same detector, then fixes). All four are scored on the setting's evaluation set.
What is left between fix_oracle and the oracle is what the unsures' true classes add.

`detection` bounds flip finding by what the images show: the oracle (trained on every true class)
judges the evaluation set's certain crops, whose labels are flipped as the setting's noise flips a
person's (uniform, or in proportion to hardness), 20 draws; a flip is flagged when the oracle's
output for the given label is low. Its precision and recall at the oracle's own call (output < 0.5),
recall at precision 0.85 and 0.97, and precision at recall 0.97 (means over the draws): a flip that
looks like the label it was given is invisible to any detector that learns from the images.

One JSON line per setting; a rerun skips those in --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import add_work_arguments, append_line, finished_settings, read_lines, write_lines  # noqa: E402

from helpers.core.atomic import OutputSet  # noqa: E402
from helpers.core.columns import test_mask  # noqa: E402
from helpers.core.files import read_csv_file  # noqa: E402
from helpers.core.labels import LabelScheme, round_annotations  # noqa: E402
from helpers.curation.eval_set import eval_decisions, eval_scores, read_eval_set  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.demo import EVAL_DIR, EVAL_TRUTH, systematic_flip_prob  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import Pair, read_annotations  # noqa: E402
from helpers.data.truth import read_truth, truth_lookup  # noqa: E402
from helpers.model.bundle import load_bundle, predict_with_bundle  # noqa: E402
from helpers.run.parameters import train_config, training_rows  # noqa: E402

SCHEME = LabelScheme.from_dict({"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1})
BOUNDS = ("prune_oracle", "fix_oracle")


def bound_pair(layout: Layout, truth, kind: str) -> Pair:
    """The combined set as SB sees it (unsures unlabeled) with the planted flips pruned or fixed."""
    ann = read_annotations(layout.combined.ann)
    flipped = (truth_lookup(truth, ann["image_id"], "label_flipped") == True) & ~test_mask(ann)  # noqa: E712 (NaN)
    true_value = np.where(truth_lookup(truth, ann["image_id"]) == SCHEME.positive, 1.0, 0.0)
    values = ann["annotation"].to_numpy(dtype=float)
    unsure = (round_annotations(ann["annotation"]) == SCHEME.ann_dict["unsure"]) & ~test_mask(ann)
    values = np.where(unsure, -1.0, values)
    values = np.where(flipped, -1.0 if kind == "prune_oracle" else true_value, values)
    ann["annotation"] = values
    pair = Pair(layout.combined.images, layout.run_dir(kind) / f"combined_ann_{kind}.csv")
    with OutputSet() as out:
        out.csv(ann, pair.ann)
    return pair


def train_recommended(pair: Pair, seed: int, predictions: Path, bundle: Path) -> None:
    """SB's recipe (parameters/recommended.yaml) with the setting's seed on `pair`, saved to `bundle`."""
    cfg = train_config(**training_rows(ROOT / "parameters" / "recommended.yaml"), seed=seed, progress=False)
    train_and_save(pair, SCHEME, TrainRequest(cfg, predictions, bundle))


def eval_set_scores(data: Path, bundles: dict[str, Path], seed: int) -> dict[str, dict[str, float]]:
    """Each bundle's scores on the setting's evaluation set (eval_scores, against `s_b`), rounded."""
    images, truth_pos = read_eval_set(data / EVAL_DIR, SCHEME.positive)
    table = eval_scores(eval_decisions(bundles, images, SCHEME.positive), truth_pos, seed=seed)
    return {str(name): {k: round(float(v), 5) for k, v in row.items() if np.isfinite(v)}
            for name, row in table.iterrows()}


def measure(data: Path, seed: int) -> dict:
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), SCHEME)
    truth = read_truth(str(data / "truth.csv"), layout)
    bundles = {"s_b": layout.model_perf("s_b"), "s_oracle": layout.model_perf("s_oracle")}
    for kind in BOUNDS:
        bundle = layout.model_perf(kind)
        if not bundle.is_file():
            train_recommended(bound_pair(layout, truth, kind), seed, layout.predictions(kind), bundle)
        bundles[kind] = bundle
    return eval_set_scores(data, bundles, seed)


def flip_detection(suspicion: np.ndarray, flipped: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """A flagged set's precision and recall, and the best cuts of the ranking at fixed precision or recall."""
    precision, recall, _ = precision_recall_curve(flipped, suspicion)
    hits = (flagged & flipped).sum()
    return {"precision": hits / max(flagged.sum(), 1), "recall": hits / flipped.sum(),
            "recall at precision 0.85": recall[precision >= 0.85].max(initial=0.0),
            "recall at precision 0.97": recall[precision >= 0.97].max(initial=0.0),
            "precision at recall 0.97": precision[recall >= 0.97].max()}


def detection_bound(data: Path, noise: str, frac: float, seed: int, draws: int = 20) -> dict[str, float]:
    """Flip finding by the oracle on the evaluation set, its labels flipped as the setting flips them."""
    truth = read_csv_file(data / EVAL_DIR / EVAL_TRUTH)
    images, truth_pos = read_eval_set(data / EVAL_DIR, SCHEME.positive)
    hardness = truth.loc[~truth["unsure"].astype(bool), "hardness"].to_numpy(dtype=float)
    path = data / "runs" / "s_oracle" / "model_perf.zip"
    bundle = load_bundle(path)
    p_pos = predict_with_bundle(bundle, images, path)[:, bundle.spec.class_names.index(SCHEME.positive)]
    flip_prob = np.full(len(hardness), frac) if noise == "uniform" else systematic_flip_prob(
        hardness, np.ones(len(hardness), bool), frac)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        flipped = rng.random(len(hardness)) < flip_prob
        given_pos = truth_pos ^ flipped
        suspicion = np.where(given_pos, 1 - p_pos, p_pos)  # the oracle's output for the other class
        scores.append(flip_detection(suspicion, flipped, suspicion > 0.5))
    return {k: round(float(np.mean([s[k] for s in scores])), 4) for k in scores[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_work_arguments(parser)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/curation_bounds.jsonl")
    args = parser.parse_args()
    lines = read_lines(args.out)
    for line in lines:  # measured before the detection bound: add it where the setting's folder is still there
        data = Path(line["work"]) / line["setting"]
        if "detection" not in line and (data / "runs" / "s_oracle").is_dir():
            line["detection"] = detection_bound(data, line["noise"], line["flip_frac"], line["seed"])
            write_lines(args.out, lines)
    done = {line["setting"] for line in lines}
    names = finished_settings(args)
    for name in names:
        if name in done:
            continue
        noise, frac, seed = name.split("_")
        seed = int(seed.removeprefix("seed"))
        row = {"setting": name, "noise": noise, "flip_frac": float(frac), "seed": seed, "work": str(args.work),
               "eval": measure(args.work / name, seed), "detection": detection_bound(args.work / name, noise, float(frac), seed)}
        print(json.dumps(row), flush=True)
        append_line(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
