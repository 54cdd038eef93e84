"""Training recipes on the demo: SB on the noisy labels against the clean-label oracle, over seeds.

    .venv/bin/python benchmarks/recipe.py [--seeds 0,1,2] [--recipes seed,recommended,...] [--work DIR]
                                          [--out FILE] [--n-patient 4000 --n-neg 2000] [--labels noisy,oracle]
                                          [--no-target] [--dataset cells|digits] [--flip-frac F] [--noise KIND]
                                          [--eval-size N] [--baseline RECIPE]

Per seed: fresh demo data (that seed), combined and split as notebooks 01 and 02 do (test_frac 0.2:
every run is scored on the same test images). Per recipe, two runs:
- `noisy`: SB, the certain images with the labels a person gave them (flips included);
- `oracle`: every non-test image, the unsures included, with its true class from truth.csv: what a
  perfect curation could give the same recipe.
Both are scored on the test rows against the truth: accuracy, ROC AUC, ECE; `gap` is oracle minus
noisy. Each run also records its training time, its epochs, and the training seconds until its
validation accuracy first reached the `seed` recipe's best (time to accuracy).

With --eval-size N (the cells only), each seed's data also get N new crops with true labels (eval/,
never read by the pipeline) and every run is scored on their certain crops too (`eval_accuracy`): ~200
test rows of a 1,000-crop set cannot tell two recipes apart. The summary gives each recipe's change
from --baseline on the same seeds (paired), with its 95% t-interval over the seeds.

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

from _measure import append_line, mean_interval, read_lines  # noqa: E402

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.curation.eval_set import eval_decisions, read_eval_set  # noqa: E402
from helpers.curation.oracle import oracle_pair  # noqa: E402
from helpers.curation.out_of_fold import FoldSettings  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.combine_split import combine, split_by_class  # noqa: E402
from helpers.data.demo import EVAL_DIR, EVAL_TRUTH, NOISE_KINDS, DemoSpec, make_demo, make_eval_set  # noqa: E402
from helpers.data.digits import DigitsSpec, make_digits  # noqa: E402
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
    # more optimizer steps on a small set (the 1,797 digits give SB ~17 batches of 64 an epoch)
    "recommended.yaml_15ep": {**RECOMMENDED_FILE, "epochs": 15},
    "recommended.yaml+min_steps45": {**RECOMMENDED_FILE, "min_steps_per_epoch": 45},
    # or more epochs only for sets too small for 250 steps in 10 epochs (the cells' fits all have more)
    "recommended.yaml+min_steps250": {**RECOMMENDED_FILE, "min_steps": 250},
    # the final model's outputs on the test rows, or the mean of 5 out-of-fold models'
    "recommended.yaml+fold_ensemble": {**RECOMMENDED_FILE, "wrong_from": "out_of_fold", "folds": 5,
                                       "fold_ensemble": True},
    # MixUp (issue 35): a mild and a strong mix
    "recommended.yaml+mixup0.4": {**RECOMMENDED_FILE, "mixup_alpha": 0.4},
    "recommended.yaml+mixup1": {**RECOMMENDED_FILE, "mixup_alpha": 1.0},
    # how long to train, from the set's size (issue 35): a larger step budget, and a fixed long schedule
    "recommended.yaml+min_steps500": {**RECOMMENDED_FILE, "min_steps": 500},
    "recommended.yaml+min_steps1000": {**RECOMMENDED_FILE, "min_steps": 1000},
    "recommended.yaml+min_steps2000": {**RECOMMENDED_FILE, "min_steps": 2000},
    "recommended.yaml_20ep": {**RECOMMENDED_FILE, "epochs": 20},
    "recommended.yaml_30ep": {**RECOMMENDED_FILE, "epochs": 30},
    # early-learning regularization (issue 35): a single network that resists memorising wrong labels
    "recommended.yaml+elr0.1": {**RECOMMENDED_FILE, "elr_lambda": 0.1},
    "recommended.yaml+elr0.3": {**RECOMMENDED_FILE, "elr_lambda": 0.3},
    "recommended.yaml+elr1": {**RECOMMENDED_FILE, "elr_lambda": 1.0},
    "recommended.yaml+elr3": {**RECOMMENDED_FILE, "elr_lambda": 3.0},
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
DEMO_DATA = {"dataset": "cells", "flip_frac": DemoSpec.flip_frac, "noise": DemoSpec.noise}


def data_folder(work: Path, data: dict, seed: int) -> Path:
    """Where a data setting's seed lives in --work (the demo's as before settings were recorded)."""
    prefix = "" if data == DEMO_DATA else f"{data['dataset']}_{data['noise']}_{data['flip_frac']:g}_"
    if "n_patient" in data:
        prefix += f"{data['n_patient']}+{data['n_neg']}_"
    return work / f"{prefix}seed_{seed}"


def demo_layout(data: Path, spec: DemoSpec | DigitsSpec, eval_size: int = 0) -> tuple[Layout, pd.DataFrame]:
    """Demo (or digits) data in `data`, combined and split (once; reused by every recipe), and its truth;
    with `eval_size`, also the cells' evaluation set."""
    if not (data / "truth.csv").is_file():
        make_digits(data, spec) if isinstance(spec, DigitsSpec) else make_demo(data, spec)
    if eval_size and not (data / EVAL_DIR / EVAL_TRUTH).is_file():
        make_eval_set(data / EVAL_DIR, spec, eval_size)
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


def eval_accuracy(bundle: Path, eval_set: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """The run's accuracy on the evaluation set's certain crops, against their true class."""
    images, truth_pos = eval_set
    calls = eval_decisions({"run": bundle}, images, SCHEME.positive)["run"]
    return {"eval_crops": int(len(truth_pos)), "eval_accuracy": float((calls == truth_pos).mean())}


def measure(seed: int, recipe: str, labels: str, layout: Layout, truth: pd.DataFrame, target: float | None,
            data: Path, eval_set: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    pair = layout.certain if labels == "noisy" else oracle_pair(layout, truth)
    out = data / "recipes" / f"{recipe}_{labels}"
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
            **(eval_accuracy(out / "model_perf.zip", eval_set) if eval_set is not None else {}),
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


def paired_changes(rows: list[dict], baseline: str) -> pd.DataFrame:
    """Per recipe and labels: the mean change in accuracy from `baseline` on the same seeds (on the
    evaluation set where every run has one, else the test rows), with its 95% t-interval over seeds."""
    frame = pd.DataFrame(rows)
    metric = "eval_accuracy" if "eval_accuracy" in frame and frame["eval_accuracy"].notna().all() else "accuracy"
    wide = frame.pivot_table(index=["labels", "seed"], columns="recipe", values=metric)
    if baseline not in wide.columns:
        return pd.DataFrame()
    out = []
    for recipe in wide.columns:
        for labels, part in wide.groupby(level="labels"):
            diff = (part[recipe] - part[baseline]).dropna()
            if recipe == baseline or len(diff) < 2:
                continue
            low, high = mean_interval(list(diff))
            out.append({"recipe": recipe, "labels": labels, "metric": metric, "seeds": len(diff),
                        "change": diff.mean(), "low": low, "high": high})
    return pd.DataFrame(out).round(4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {list(RECIPES)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recipe_benchmark"))
    parser.add_argument("--out", type=Path, default=None, help="JSON lines (default: <work>/recipe.jsonl)")
    parser.add_argument("--n-patient", type=int, default=DemoSpec.n_patient)
    parser.add_argument("--n-neg", type=int, default=DemoSpec.n_neg)
    parser.add_argument("--dataset", choices=("cells", "digits"), default="cells",
                        help="cells: the generated demo; digits: scikit-learn's 1,797 real handwritten digits "
                             "(--n-patient and --n-neg do not apply; give it its own --work)")
    parser.add_argument("--flip-frac", type=float, default=None, help=f"share of certain labels flipped "
                                                                       f"(default: the demo's {DemoSpec.flip_frac:g})")
    parser.add_argument("--noise", choices=NOISE_KINDS, default=None, help=f"default: the demo's {DemoSpec.noise}")
    parser.add_argument("--labels", default="noisy,oracle", help="which runs per recipe: noisy (SB), oracle, or both")
    parser.add_argument("--eval-size", type=int, default=0, metavar="N",
                        help="the cells only: score every run on N new crops with true labels as well")
    parser.add_argument("--baseline", default="recommended.yaml",
                        help="the recipe the summary's paired changes are measured from")
    parser.add_argument("--no-target", action="store_true",
                        help="skip the seed recipe (run only for its time-to-accuracy target)")
    args = parser.parse_args()
    if args.eval_size and args.dataset != "cells":
        parser.error("--eval-size: the digits have no evaluation set (score them over more seeds)")
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; known: {list(RECIPES)}")
    if "seed" not in recipes and not args.no_target:
        recipes.insert(0, "seed")  # its best validation accuracy is the time-to-accuracy target
    out = args.out or args.work / "recipe.jsonl"
    data = {"dataset": args.dataset, "flip_frac": DemoSpec.flip_frac if args.flip_frac is None else args.flip_frac,
            "noise": args.noise or DemoSpec.noise}
    if args.dataset == "cells" and (args.n_patient, args.n_neg) != (DemoSpec.n_patient, DemoSpec.n_neg):
        data.update(n_patient=args.n_patient, n_neg=args.n_neg)  # another size: a setting of its own
    # one file may hold several data settings; lines from before they were recorded are the demo's
    rows = [r for r in read_lines(out) if r.get("data", DEMO_DATA) == data]
    done = {(r["seed"], r["recipe"], r["labels"]) for r in rows}
    for seed in (int(s) for s in args.seeds.split(",")):
        spec = (DigitsSpec(flip_frac=data["flip_frac"], noise=data["noise"], seed=seed) if args.dataset == "digits"
                else DemoSpec(n_patient=args.n_patient, n_neg=args.n_neg, seed=seed, flip_frac=data["flip_frac"],
                              noise=data["noise"]))
        folder = data_folder(args.work, data, seed)
        layout, truth = demo_layout(folder, spec, args.eval_size)
        eval_set = read_eval_set(folder / EVAL_DIR, SCHEME.positive) if args.eval_size else None
        for recipe in recipes:
            for labels in args.labels.split(","):
                if (seed, recipe, labels) in done:
                    continue
                target = next((r["best_val_accuracy"] for r in rows
                               if (r["seed"], r["recipe"], r["labels"]) == (seed, "seed", "noisy")), None)
                row = {"data": data, **measure(seed, recipe, labels, layout, truth, target, folder, eval_set)}
                rows.append(row)
                append_line(out, row)  # one finished run at a time: a stopped benchmark keeps it
                print(json.dumps(row), flush=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarise(rows).to_string())
        print(f"\nchange from {args.baseline} on the same seeds:")
        print(paired_changes(rows, args.baseline).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
