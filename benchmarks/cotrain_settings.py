"""Co-training's settings: each variant's accuracy on the evaluation set, beside the same set trained by one network.

    .venv/bin/python benchmarks/cotrain_settings.py SETTING_DIR [--variants default,unlabeled1,...]
        [--out benchmarks/results/cotrain_settings.jsonl]

SETTING_DIR is one finished setting of benchmarks/curation.py run with `s_cotrain` among its
strategies (its --work folder, e.g. /tmp/curation_bench/uniform_0.2_seed0): the set s_cotrain's 05
trained on (SB's certain images with the neighbour vote's flags pruned, the unsures left without a
label) is trained again with parameters/recommended.yaml and each variant's co-training settings,
and every fit is scored on the setting's evaluation set (true labels, crops the pipeline never saw).
`plain` is the same set trained as s_prune's 05 trains it (one network, the unlabeled rows ignored).

Resumable: one JSON line per (setting, variant); a rerun skips what is there.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.curation.eval_set import read_eval_set  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.demo import EVAL_DIR  # noqa: E402
from helpers.data.sets import Pair  # noqa: E402
from helpers.model.inference import ensemble_probabilities  # noqa: E402
from helpers.run.parameters import train_config, training_rows  # noqa: E402

COTRAIN = {"unlabeled": "cotrain"}
BEST = {**COTRAIN, "cotrain_keep": "best"}  # the pair of the best validation loss, not the last epoch
VARIANTS: dict[str, dict] = {
    "plain": {},
    "default": COTRAIN,  # the table's co-training defaults
    "keep_best": BEST,
    "unlabeled1_best": {**BEST, "cotrain_unlabeled_weight": 1.0},  # the unlabeled rows learn the pair's guess
    "mixup4_best": {**BEST, "cotrain_mixup": 4.0},  # DivideMix's MixUp
    "unlabeled1_mixup4_best": {**BEST, "cotrain_unlabeled_weight": 1.0, "cotrain_mixup": 4.0},  # DivideMix's settings
    "no_division_best": {**BEST, "cotrain_threshold": 1e-9},  # every label kept: the pair and its refined labels only
    "unlabeled1": {**COTRAIN, "cotrain_unlabeled_weight": 1.0},
    "mixup4": {**COTRAIN, "cotrain_mixup": 4.0},
}
SCHEME = LabelScheme.from_dict(DEFAULT_ANN_DICT)


def measure(setting: Path, variant: str, work: Path) -> dict:
    """Train s_cotrain's 05 input with the variant's settings; its accuracy on the evaluation set."""
    seed = int(setting.name.split("seed")[-1])
    cfg = train_config(**{**training_rows(ROOT / "parameters" / "recommended.yaml"), "seed": seed, "progress": False,
                          **VARIANTS[variant]})
    run_dir = setting / "runs" / "s_cotrain"
    pair = Pair(run_dir / "combined_images_cl.npy", run_dir / "combined_ann_cl.csv")
    out = work / setting.name / variant
    start = time.perf_counter()
    run = train_and_save(pair, SCHEME, TrainRequest(cfg, out / "ann_with_predictions.csv", out / "model_perf.zip"))
    images, truth_pos = read_eval_set(setting / EVAL_DIR, SCHEME.positive)
    positive = run.fit.spec.class_names.index(SCHEME.positive)
    calls = ensemble_probabilities(run.fit.predictors, images)[:, positive] > 0.5
    return {"setting": setting.name, "variant": variant, "settings": VARIANTS[variant],
            "eval_accuracy": float((calls == truth_pos).mean()), "eval_recall": float(calls[truth_pos].mean()),
            "eval_false_positive_rate": float(calls[~truth_pos].mean()), "kept_epoch": run.fit.best_epoch,
            "train_seconds": round(run.fit.train_seconds, 1), "wall_seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("setting", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cotrain_settings"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cotrain_settings.jsonl")
    args = parser.parse_args()
    done = {(r["setting"], r["variant"]) for r in read_lines(args.out)}
    for variant in args.variants.split(","):
        if (args.setting.name, variant) not in done:
            line = measure(args.setting, variant, args.work)
            append_line(args.out, line)
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
