"""Label quality on demo data, measured against the hidden truth, over several seeds.

    .venv/bin/python benchmarks/label_quality.py [--seeds 0,1,2] [--work /tmp/label_quality] [--folds 5]
                                                 [--short-epochs 6] [--long-epochs 40] [--reuse]
                                                 [--arch resnet18 --width 16 --batch-size 128] [--flips-only] [--out FILE]

Per seed (fresh demo data generated with that seed):
1. The whole pipeline (parameters/demo.yaml, wrong_from=out_of_fold, all strategies) through the
   runner; 06's table gives each strategy's unsure relabel accuracy and final test accuracy.
2. Finding the planted label flips: SB (--arch/--width/--batch-size) trained on the certain images
   for a short and a long run (the origin's 40 epochs), keeping the last epoch's weights as the origin
   did, with 5-fold out-of-fold outputs; precision / recall / ROC AUC / average precision of
   in-sample, out-of-fold and cleanlab flags vs truth. --flips-only skips step 1.

Prints one JSON line per (setting, method) and per strategy, averaged over the seeds (per-seed
values included), and writes them to --out (<work>/label_quality.jsonl) after every seed. With --reuse,
finished pipelines (06's metrics) and flip runs (their predictions) in <work> are summarised again
instead of rerun.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import write_lines  # noqa: E402

from helpers.core.columns import (
    flag_values,  # noqa: E402
    oof_column,  # noqa: E402
)
from helpers.core.labels import LabelScheme  # noqa: E402
from helpers.curation.label_issues import flip_finding, flip_rows  # noqa: E402
from helpers.curation.out_of_fold import FoldSettings  # noqa: E402
from helpers.curation.training_run import TrainRequest, train_and_save  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import read_annotations  # noqa: E402
from helpers.run.parameters import train_config  # noqa: E402

ANN_DICT = {"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1}
STRATEGY_COLUMNS = {"accuracy": "test accuracy", "accuracy CI low": "test accuracy CI low",
                    "accuracy CI high": "test accuracy CI high", "ROC AUC": "test ROC AUC",
                    "accuracy vs truth": "accuracy vs truth",
                    "unsure relabel accuracy vs truth": "unsure relabel accuracy",
                    "unsures labelled (share)": "unsures labelled (share)"}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def demo_data(seed: int, work: Path) -> None:
    data = work / f"seed_{seed}"
    run([sys.executable, "-m", "helpers", "demo", str(data), "--seed", str(seed), "--if-missing"])


def pipeline(seed: int, work: Path, folds: int, reuse: bool) -> pd.DataFrame:
    """This seed's demo data through the whole DAG; returns 06's comparison table."""
    data = work / f"seed_{seed}"
    compare = data / "runs" / "metrics" / "06_compare.json"
    if reuse and compare.is_file():
        return pd.DataFrame(json.loads(compare.read_text())["table"]).set_index("run")
    run([sys.executable, "-m", "helpers", "run", "parameters/demo.yaml",
         "-p", f"data_dir={data}/patient", "-p", f"data_dir_n={data}/neg", "-p", f"data_dir_base={data}/runs",
         "-p", f"truth_path={data}/truth.csv", "-p", "overrides_path=", "-p", f"seed={seed}",
         "-p", "wrong_from=out_of_fold", "-p", f"folds={folds}", "--jobs", "2"])
    return pd.DataFrame(json.loads(compare.read_text())["table"]).set_index("run")


def flips(seed: int, work: Path, epochs: int, args: argparse.Namespace) -> pd.DataFrame:
    """SB on the certain images, last-epoch weights (as the origin), with out-of-fold outputs."""
    data = work / f"seed_{seed}"
    scheme = LabelScheme.from_dict(ANN_DICT)
    truth = pd.read_csv(data / "truth.csv")
    out = data / f"flips_{args.arch}_w{args.width}_bs{args.batch_size}_{epochs}ep"
    reuse, folds = args.reuse, args.folds
    if reuse and (out / "ann_with_predictions.csv").is_file():
        predictions = read_annotations(out / "ann_with_predictions.csv")
        return flip_finding(predictions, truth, scheme).assign(**model_errors(predictions, truth, scheme))
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), scheme)
    out.mkdir(parents=True, exist_ok=True)
    cfg = train_config(arch=args.arch, width=args.width, epochs=epochs, batch_size=args.batch_size, seed=seed,
                       keep_weights="last", progress=False)
    start = time.perf_counter()
    request = TrainRequest(cfg, out / "ann_with_predictions.csv", out / "model_perf.zip", out_of_fold=FoldSettings(folds))
    result = train_and_save(layout.certain, scheme, request)
    table = flip_finding(result.predictions, truth, scheme).assign(**model_errors(result.predictions, truth, scheme))
    print(f"seed {seed}, {epochs} epochs: {time.perf_counter() - start:.0f} s\n{table.round(3)}", flush=True)
    return table


def model_errors(predictions: pd.DataFrame, truth: pd.DataFrame, scheme: LabelScheme) -> dict[str, float]:
    """Why precision is what it is: how often the out-of-fold model is wrong about the true class on
    the certain, non-test, correctly labelled rows, and the share of cleanlab's false alarms that are
    such model errors (rather than the method flagging images the model gets right)."""
    rows, flipped = flip_rows(predictions, truth, scheme)
    clean = rows & ~flipped
    true_class = truth.set_index("image_id").reindex(predictions["image_id"])["truth"].to_numpy()
    model_wrong = (predictions[oof_column("parasite")].to_numpy() >= 0.5) != (true_class == "parasite")
    false_alarms = clean & flag_values(predictions["is_label_issue"])
    return {"oof_error_vs_truth_on_clean": float(model_wrong[clean].mean()),
            "cleanlab_false_alarms_model_wrong": float(model_wrong[false_alarms].mean()) if false_alarms.any()
            else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, default=Path("/tmp/label_quality"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--short-epochs", type=int, default=6)
    parser.add_argument("--long-epochs", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="summarise finished runs in --work instead of rerunning")
    parser.add_argument("--arch", default="resnet18", help="SB's architecture for the flip runs")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--flips-only", action="store_true", help="skip the whole-pipeline runs")
    parser.add_argument("--out", type=Path, help="summary file (default <work>/label_quality.jsonl)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or args.work / "label_quality.jsonl"

    strategy_rows: dict[str, list[dict]] = {}
    flip_rows: dict[tuple[str, str], list[dict]] = {}
    for seed in seeds:
        demo_data(seed, args.work)
        start = time.perf_counter()
        table = pd.DataFrame() if args.flips_only else pipeline(seed, args.work, args.folds, args.reuse)
        if not args.flips_only:
            print(f"seed {seed}: pipeline {time.perf_counter() - start:.0f} s", flush=True)
        for name, row in table.iterrows():
            if row.get("status") == "ok":
                strategy_rows.setdefault(name, []).append(
                    {new: float(row[old]) for old, new in STRATEGY_COLUMNS.items() if old in row and pd.notna(row[old])}
                    | {"seed": seed})
        for setting, epochs in (("short", args.short_epochs), ("long", args.long_epochs)):
            for method, row in flips(seed, args.work, epochs, args).iterrows():
                flip_rows.setdefault((setting, method), []).append(
                    {k: float(row[k]) for k in ("precision", "recall", "roc_auc", "average_precision", "flagged", "flipped",
                                                 "oof_error_vs_truth_on_clean", "cleanlab_false_alarms_model_wrong")} | {"seed": seed})
        # Written after every seed so a long run that is stopped still leaves its finished seeds.
        lines = summary_lines(flip_rows, strategy_rows, args)
        write_lines(out, lines)
        print(f"seed {seed} done: {len(lines)} lines in {out}", flush=True)

    for line in lines:
        print(json.dumps(line))


def summary_lines(flip_rows: dict, strategy_rows: dict, args: argparse.Namespace) -> list[dict]:
    """One line per (setting, method) of flip finding and one per strategy, averaged over the seeds so far."""
    lines = []
    for (setting, method), rows in flip_rows.items():
        epochs = args.short_epochs if setting == "short" else args.long_epochs
        lines.append({"kind": "flip_finding", "method": method, "setting": setting, "epochs": epochs,
                      "model": f"SB {args.arch} w{args.width} bs{args.batch_size}, last-epoch weights",
                      "folds": args.folds,
                      **_means(rows), "seeds": len(rows), "per_seed": rows})
    for name, rows in strategy_rows.items():
        lines.append({"kind": "strategy", "strategy": name, **_means(rows), "seeds": len(rows), "per_seed": rows})
    return lines


def _means(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "seed"]
    return {k: round(float(np.nanmean([r.get(k, np.nan) for r in rows])), 4) for k in keys}


if __name__ == "__main__":
    main()
