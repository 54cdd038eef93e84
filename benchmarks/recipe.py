"""Training recipes on the demo: SB on the noisy labels against the clean-label oracle, over seeds.

    .venv/bin/python benchmarks/recipe.py [--seeds 0,1,2] [--recipes seed,recommended,...] [--work DIR]
                                          [--out FILE] [--n-patient 4000 --n-neg 2000] [--labels noisy,oracle]
                                          [--no-target]

Per seed: fresh demo data (that seed), combined and split as notebooks 01 and 02 do (test_frac 0.2:
every run is scored on the same test images). Per recipe, two runs:
- `noisy`: SB, the certain images with the labels a person gave them (flips included);
- `oracle`: every non-test image, the unsures included, with its true class from truth.csv: what a
  perfect curation could give the same recipe.
Both are scored on the test rows against the truth: accuracy, ROC AUC, ECE; `gap` is oracle minus
noisy. Each run also records its training time, its epochs, and the training seconds until its
validation accuracy first reached the `seed` recipe's best (time to accuracy).

Resumable: one JSON line per (seed, recipe, labels) goes to --out as soon as it is measured, and a
rerun skips what is there. The summary (means and spreads over the seeds) is printed at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.curation.oracle import oracle_pair  # noqa: E402
from helpers.curation.out_of_fold import FoldSettings  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.combine_split import combine, split_by_class  # noqa: E402
from helpers.data.demo import DemoSpec, make_demo  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.metrics import binary_calibration_error  # noqa: E402
from helpers.run.parameters import train_config, training_rows  # noqa: E402

SEED_RECIPE = dict(arch="resnet18", width=16, batch_size=128, epochs=8)  # SB as parameters/demo.yaml trained it before issue 13
RECOMMENDED = dict(arch="resnet10", width=16, batch_size=64, epochs=15, lr=3e-3, optimizer="adamw", weight_decay=0.05,
                   schedule="onecycle", augment="flips_rot90", tta=True, select_by="val_accuracy", calibrate=True)
RECIPES: dict[str, dict] = {
    "seed": SEED_RECIPE,
    "recommended": RECOMMENDED,
    # the ablation: the recommended recipe with one part switched back
    "recommended-augment": {**RECOMMENDED, "augment": "none"},
    "recommended-tta": {**RECOMMENDED, "tta": False},
    "recommended-select_by": {**RECOMMENDED, "select_by": "val_loss"},
    "recommended-adamw_onecycle": {**RECOMMENDED, "optimizer": "adam", "weight_decay": 0.0, "schedule": "constant",
                                   "lr": 1e-3},
    "recommended-resnet10": {**RECOMMENDED, "arch": "resnet18"},
    "recommended-calibrate": {**RECOMMENDED, "calibrate": False},
    "recommended+shift": {**RECOMMENDED, "augment": "flips_rot90_shift"},
    # toward faster time to accuracy: a shorter one-cycle, or cosine after one epoch of warm-up
    "recommended_8ep": {**RECOMMENDED, "epochs": 8},
    "recommended_cosine": {**RECOMMENDED, "schedule": "cosine"},
}
# what parameters/recommended.yaml holds now, and two neighbours of it
RECOMMENDED_FILE = training_rows(ROOT / "parameters" / "recommended.yaml")
RECIPES.update({
    "recommended.yaml": RECOMMENDED_FILE,
    "recommended.yaml_8ep": {**RECOMMENDED_FILE, "epochs": 8},
    "recommended.yaml_onecycle": {**RECOMMENDED_FILE, "schedule": "onecycle"},
    # the final model's outputs on the test rows, or the mean of 5 out-of-fold models'
    "recommended.yaml+fold_ensemble": {**RECOMMENDED_FILE, "wrong_from": "out_of_fold", "folds": 5,
                                       "fold_ensemble": True},
})
# the GPU profile (bf16 on CUDA: the same math in fp32 on the CPU), and batches of 512 at several
# learning rates without its rule for small sets (min_steps_per_epoch)
GPU_FILE = training_rows(ROOT / "parameters" / "recommended-gpu.yaml")
RECIPES.update({
    "recommended-gpu.yaml": GPU_FILE,
    **{f"recommended-gpu.yaml_lr{lr:g}": {**GPU_FILE, "batch_size": 512, "lr": lr, "min_steps_per_epoch": 0}
       for lr in (0.003, 0.006, 0.012, 0.024)},
})
RUN_OPTIONS = ("wrong_from", "folds", "fold_ensemble")  # recipe keys for out-of-fold settings, not the TrainConfig
SCHEME = LabelScheme.from_dict(DEFAULT_ANN_DICT)


def demo_layout(seed: int, work: Path, spec: DemoSpec) -> tuple[Layout, pd.DataFrame]:
    """Demo data for `seed`, combined and split (once; reused by every recipe), and its truth."""
    data = work / f"seed_{seed}"
    if not (data / "truth.csv").is_file():
        make_demo(data, spec)
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), SCHEME)
    if not layout.certain.ann.is_file():
        combine(layout.default_sources, layout.combined, SCHEME, test_frac=0.2, seed=0)
        split_by_class(layout.combined, SCHEME)
    return layout, pd.read_csv(data / "truth.csv")


def score(predictions: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Accuracy, ROC AUC and ECE of the positive output on the test rows, against the truth."""
    test = predictions[predictions["split"] == "test"]
    is_pos = (truth.set_index("image_id")["truth"].reindex(test["image_id"]) == SCHEME.positive).to_numpy()
    positive = test[f"{SCHEME.positive} output"].to_numpy()
    return {"test_rows": int(len(test)), "accuracy": float(((positive > 0.5) == is_pos).mean()),
            "roc_auc": float(roc_auc_score(is_pos, positive)),
            "ece": binary_calibration_error(is_pos, positive)}


def seconds_to_reach(history: pd.DataFrame, target: float) -> float | None:
    """Training seconds until the validation accuracy first reached `target` (None: never)."""
    reached = np.flatnonzero(history["val_accuracy"].to_numpy() >= target)
    return float(history["seconds"].cumsum().iloc[reached[0]]) if len(reached) else None


def measure(seed: int, recipe: str, labels: str, layout: Layout, truth: pd.DataFrame, target: float | None,
            work: Path) -> dict:
    pair = layout.certain if labels == "noisy" else oracle_pair(layout, truth)
    out = work / f"seed_{seed}" / "recipes" / f"{recipe}_{labels}"
    recipe_cfg = {k: v for k, v in RECIPES[recipe].items() if k not in RUN_OPTIONS}
    options = {k: v for k, v in RECIPES[recipe].items() if k in RUN_OPTIONS}
    cfg = train_config(**recipe_cfg, seed=seed, progress=False)
    start = time.perf_counter()
    folds = (FoldSettings(options.get("folds", 5), ensemble=options.get("fold_ensemble", False))
             if options.get("wrong_from") == "out_of_fold" else None)
    run = train_and_save(pair, SCHEME, TrainRequest(cfg, out / "ann_with_predictions.csv", out / "model_perf.zip",
                                                    out_of_fold=folds))
    history = run.fit.history
    if recipe == "seed" and labels == "noisy":  # the target is this run's own best
        target = float(history["val_accuracy"].max())
    return {"seed": seed, "recipe": recipe, "labels": labels, **score(run.predictions, truth),
            "best_val_accuracy": float(history["val_accuracy"].max()), "epochs_run": int(len(history)),
            "kept_epoch": run.fit.best_epoch, "train_seconds": round(run.fit.train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - start, 2),
            "seconds_to_seed_best_val_accuracy": seconds_to_reach(history, target) if target is not None else None}


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Per recipe: noisy and oracle test accuracy vs truth (mean, spread over seeds), the gap, ECE, times."""
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(index=["recipe", "seed"], columns="labels", values="accuracy")
    for labels in ("noisy", "oracle"):  # --labels may have run one of them only
        if labels not in wide.columns:
            wide[labels] = np.nan
    wide["gap"] = wide["oracle"] - wide["noisy"]
    noisy = frame[frame["labels"] == "noisy"].set_index(["recipe", "seed"])
    per_recipe = wide.groupby("recipe").agg(noisy_mean=("noisy", "mean"), noisy_spread=("noisy", np.ptp),
                                            oracle_mean=("oracle", "mean"), gap_mean=("gap", "mean"),
                                            seeds=("noisy", "count"))
    per_recipe["noisy_ece"] = noisy.groupby("recipe")["ece"].mean()
    per_recipe["noisy_train_s"] = noisy.groupby("recipe")["train_seconds"].mean()
    per_recipe["noisy_s_to_seed_best"] = noisy.groupby("recipe")["seconds_to_seed_best_val_accuracy"].mean()
    return per_recipe.round(4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {list(RECIPES)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recipe_benchmark"))
    parser.add_argument("--out", type=Path, default=None, help="JSON lines (default: <work>/recipe.jsonl)")
    parser.add_argument("--n-patient", type=int, default=4000)
    parser.add_argument("--n-neg", type=int, default=2000)
    parser.add_argument("--labels", default="noisy,oracle", help="which runs per recipe: noisy (SB), oracle, or both")
    parser.add_argument("--no-target", action="store_true",
                        help="skip the seed recipe (run only for its time-to-accuracy target)")
    args = parser.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {list(RECIPES)}")
    if "seed" not in recipes and not args.no_target:
        recipes.insert(0, "seed")  # its best validation accuracy is the time-to-accuracy target
    out = args.out or args.work / "recipe.jsonl"
    rows = read_lines(out)
    done = {(r["seed"], r["recipe"], r["labels"]) for r in rows}
    for seed in (int(s) for s in args.seeds.split(",")):
        layout, truth = demo_layout(seed, args.work, DemoSpec(n_patient=args.n_patient, n_neg=args.n_neg, seed=seed))
        for recipe in recipes:
            for labels in args.labels.split(","):
                if (seed, recipe, labels) in done:
                    continue
                target = next((r["best_val_accuracy"] for r in rows
                               if (r["seed"], r["recipe"], r["labels"]) == (seed, "seed", "noisy")), None)
                row = measure(seed, recipe, labels, layout, truth, target, args.work)
                rows.append(row)
                append_line(out, row)  # one finished run at a time: a stopped benchmark keeps it
                print(json.dumps(row), flush=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarise(rows).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
