"""Co-training's settings: each variant's accuracy against the truth, beside the same set trained by one network.

    .venv/bin/python benchmarks/cotrain_settings.py SETTING_DIR [SETTING_DIR ...]
        [--variants default,unlabeled1,...] [--out benchmarks/results/cotrain_settings.jsonl]

SETTING_DIR is one finished setting of benchmarks/curation.py run with `s_cotrain` among its
strategies (a folder of its --work, e.g. /tmp/curation_bench/uniform_0.2_seed0): the set s_cotrain's 05
trained on (SB's certain images with the neighbour vote's flags pruned, the unsures left without a
label) is trained again with parameters/recommended.yaml and each variant's co-training settings.
A variant named `restored_...` trains the set with the flagged labels given back (co-training
divides on its own, the vote unused), one named `fixed_...` s_fix's 05 input instead (the flags
the vote is confident of fixed to SB's class, the rest pruned). The `softoof_` and `softvote_`
variants keep every flagged image and train it towards a soft target instead of pruning it: SB's
out-of-fold parasite probability, or the share of its neighbours labelled parasite (a single-network
way to learn from the flagged images). Every fit is scored on the setting's evaluation set (true
labels, crops the pipeline never saw) where it has one (the cells), else on its test rows against
its truth.csv (the digits). `plain` is the set trained as s_prune's 05 trains it (one network, the
unlabeled rows ignored).

The variants of DivideMix's long schedule (`plain_30ep`, `long`, `long_mixup4`, `long_dividemix`) were
measured with `--out benchmarks/results/cotrain_schedule.jsonl`, after recommended.yaml's step floor
became 500 (the lines of cotrain_settings.jsonl were measured with it at 250).

Resumable: one JSON line per (setting, variant); a rerun skips what is there.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402

from helpers.core.columns import SOFT_TARGET  # noqa: E402
from helpers.core.labels import DEFAULT_ANN_DICT, POSITIVE_VALUE, LabelScheme  # noqa: E402
from helpers.curation.eval_set import read_eval_set  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.demo import EVAL_DIR  # noqa: E402
from helpers.data.sets import Pair, read_annotations  # noqa: E402
from helpers.data.truth import truth_lookup  # noqa: E402
from helpers.model.inference import ensemble_probabilities  # noqa: E402
from helpers.model.settings import TrainConfig  # noqa: E402
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
    "restored_plain": {},  # SB's own set: the flagged labels kept, one network
    "restored_best": BEST,  # co-training divides SB's set on its own
    "threshold02_best": {**BEST, "cotrain_threshold": 0.2},  # only the rows the mixture is surest of lose their label
    "warmup4_best": {**BEST, "cotrain_warmup": 4},
    "restored_default": COTRAIN,
    "fixed_plain": {},  # s_fix's 05 itself
    "fixed_default": COTRAIN,  # co-training on s_fix's set
    "restored_warmup4": {**COTRAIN, "cotrain_warmup": 4},
    "warmup4": {**COTRAIN, "cotrain_warmup": 4},
    "warmup6": {**COTRAIN, "cotrain_warmup": 6},
    "softoof_plain": {},  # one network; the flagged images train towards SB's out-of-fold probability
    "softvote_plain": {},  # ... towards the share of their neighbours labelled parasite
    # no division (the pruned and unsure rows alone are unlabeled), and they learn the pair's guess
    "pool_only_unlabeled1": {**COTRAIN, "cotrain_threshold": 1e-9, "cotrain_unlabeled_weight": 1.0, "cotrain_warmup": 4},
    # DivideMix's long schedule (MixUp and the unlabeled loss need many epochs), beside one network as long
    "plain_30ep": {"epochs": 30},
    "long": {**COTRAIN, "epochs": 30},
    "long_mixup4": {**COTRAIN, "epochs": 30, "cotrain_mixup": 4.0},
    "long_dividemix": {**COTRAIN, "epochs": 30, "cotrain_mixup": 4.0, "cotrain_unlabeled_weight": 1.0},
}
RESTORED = "restored_"  # variants whose set has the flagged labels back
FIXED = "fixed_"  # variants trained on s_fix's 05 input (confident flags fixed, the rest pruned)
SOFT = {"softoof_": "out-of-fold", "softvote_": "neighbours"}  # variants whose flagged images get soft targets
SCHEME = LabelScheme.from_dict(DEFAULT_ANN_DICT)


def training_pair(setting: Path, variant: str, out: Path) -> Pair:
    """s_cotrain's 05 input; for a restored variant a copy of it with the flagged labels given back, for
    a soft variant one with the flagged images trained towards soft targets; for a fixed variant s_fix's
    05 input."""
    run_dir = setting / "runs" / ("s_fix" if variant.startswith(FIXED) else "s_cotrain")
    pair = Pair(run_dir / "combined_images_cl.npy", run_dir / "combined_ann_cl.csv")
    soft = next((source for prefix, source in SOFT.items() if variant.startswith(prefix)), None)
    if not variant.startswith(RESTORED) and soft is None:
        return pair
    ann = read_annotations(pair.ann)
    flagged = (ann["label_action"] == "pruned").to_numpy()
    if soft is None:
        ann.loc[flagged, "annotation"] = ann.loc[flagged, "original_annotation"]
    else:
        target = parasite_share(setting, ann.loc[flagged, "image_id"], ann.loc[flagged, "original_annotation"], soft)
        ann[SOFT_TARGET] = np.nan
        ann.loc[flagged, SOFT_TARGET] = target
        ann.loc[flagged, "annotation"] = (target >= 0.5).astype(float)  # the likelier class, for counts
    out.mkdir(parents=True, exist_ok=True)
    ann.to_csv(out / "training_ann.csv", index=False)
    return Pair(pair.images, out / "training_ann.csv")


def parasite_share(setting: Path, image_ids: pd.Series, given: pd.Series, source: str) -> np.ndarray:
    """Each image's soft parasite target from SB's 03 output: its out-of-fold parasite probability, or
    the share of its neighbours labelled parasite (the vote: neighbour_agreement is the share that
    carry the image's given label)."""
    sb = read_annotations(setting / "runs" / "s_b" / "ann_with_predictions.csv").set_index("image_id")
    if source == "out-of-fold":
        return sb.loc[image_ids, f"{SCHEME.positive} out-of-fold"].to_numpy(dtype=float)
    agreement = sb.loc[image_ids, "neighbour_agreement"].to_numpy(dtype=float)
    return np.where(given.to_numpy() == POSITIVE_VALUE, agreement, 1 - agreement)


def truth_calls(setting: Path, run, predictions: Path) -> tuple[np.ndarray, np.ndarray]:
    """The fit's parasite calls and the truth: on the evaluation set where the setting has one, else on
    its test rows (truth.csv)."""
    positive = run.fit.spec.class_names.index(SCHEME.positive)
    if (setting / EVAL_DIR).exists():
        images, truth_pos = read_eval_set(setting / EVAL_DIR, SCHEME.positive)
        return ensemble_probabilities(run.fit.predictors, images)[:, positive] > 0.5, truth_pos
    ann = read_annotations(predictions)
    test = ann[ann["split"] == "test"]
    truth = truth_lookup(pd.read_csv(setting / "truth.csv"), test["image_id"])
    return test[f"{SCHEME.positive} output"].to_numpy() > 0.5, truth == SCHEME.positive


def measure(setting: Path, variant: str, work: Path) -> dict:
    """Train s_cotrain's 05 input with the variant's settings; its accuracy against the truth."""
    cfg = variant_config(setting, variant)
    out = work / setting.parent.name / setting.name / variant
    start = time.perf_counter()
    pair = training_pair(setting, variant, out)
    run = train_and_save(pair, SCHEME, TrainRequest(cfg, out / "ann_with_predictions.csv", out / "model_perf.zip"))
    calls, truth_pos = truth_calls(setting, run, out / "ann_with_predictions.csv")
    return {"setting": setting.name, "data": dataset(setting), "variant": variant, "settings": VARIANTS[variant],
            "scored_on": "eval" if (setting / EVAL_DIR).exists() else "test", "rows": int(len(truth_pos)),
            "eval_accuracy": float((calls == truth_pos).mean()), "eval_recall": float(calls[truth_pos].mean()),
            "eval_false_positive_rate": float(calls[~truth_pos].mean()), "kept_epoch": run.fit.best_epoch,
            "train_seconds": round(run.fit.train_seconds, 1), "wall_seconds": round(time.perf_counter() - start, 1)}


def variant_config(setting: Path, variant: str) -> TrainConfig:
    """recommended.yaml with the setting's seed and the variant's settings."""
    seed = int(setting.name.split("seed")[-1])
    return train_config(**{**training_rows(ROOT / "parameters" / "recommended.yaml"), "seed": seed, "progress": False,
                           **VARIANTS[variant]})


def dataset(setting: Path) -> str:
    """cells or digits, from the setting's images (the digits demo writes a `digit` column)."""
    ann = pd.read_csv(setting / "runs" / "s_cotrain" / "combined_ann_cl.csv", nrows=1)
    return "digits" if "digit" in ann.columns else "cells"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", type=Path, nargs="+")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cotrain_settings"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cotrain_settings.jsonl")
    args = parser.parse_args()
    done = {(r.get("data", "cells"), r["setting"], r["variant"]) for r in read_lines(args.out)}
    for variant in args.variants.split(","):
        for setting in args.settings:
            if (dataset(setting), setting.name, variant) not in done:
                line = measure(setting, variant, args.work)
                append_line(args.out, line)
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
