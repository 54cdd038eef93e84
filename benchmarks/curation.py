"""Curation across noise levels: how much of the SB-to-oracle gap each strategy closes.

    .venv/bin/python benchmarks/curation.py [--fracs 0.20,0.10,0.03] [--noise uniform,systematic] [--seeds 0,1,2]
        [--strategies s_2thr,s_prune,s_fix,s_2thr_fix,s_soft_fix] [--folds 3] [--work /tmp/curation_bench]
        [--out benchmarks/results/curation.jsonl] [--plot OUT.png] [-p KEY=VALUE ...]
        [--eval-size 10000] [--summary-only] [--reverdict]

Per setting (noise kind, flip fraction, seed): fresh demo data (`python -m helpers demo --flip-frac F
--noise K --seed S`), then the pipeline through the runner with parameters/recommended.yaml, 03
out-of-fold (`--folds`) for SB only, the clean-label oracle, and `--strategies`. From 06's comparison
it records, against the hidden truth: SB's, the oracle's and every strategy's test accuracy and
parasite recall at max_fpr, the share of the SB-to-oracle gap closed, the paired bootstrap interval
of the gain over SB, unsure relabel accuracy, pruned / fixed counts and their precision; cleanlab's
precision and recall on the planted flips; the review-efficiency ratios to random at 5% and 10%.

The test rows (~1,100 per seed) cannot resolve differences under about a point, so every run is also
scored on the setting's evaluation set (`--eval-size` crops from the same generator on new slides,
true labels, never read by the pipeline; `python -m helpers demo DIR --eval-size N` writes it): its
accuracy, the paired interval of its gain over SB, and the share of the SB-to-oracle gap it closes,
summarised over seeds with a 95% t-interval.

And the verdict (06's rule: paired bootstrap against SB, step-down corrected) as a user would get it:
scored on the annotations alone and after the simulated reviewer verified `--budgets` shares of the
test-review queue, by ROC AUC and by accuracy: its pick, the pick's accuracy against the truth, and
the regret (the best run's truth accuracy minus the pick's; the oracle is never a candidate). A
budget of 1 verifies every test row: the rule scored on the truth, so its regret is what the test
set's size and the significance rule leave, whatever the review.

Resumable: each finished setting is one line of --out, and a rerun skips it. The summary (one
markdown table per noise kind, means over seeds) and the plot (gap closed by the best strategy
against the flip fraction, per noise kind) are rebuilt from --out every time.
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

from _measure import append_line, mean_interval, read_lines, write_lines  # noqa: E402

from helpers import plots  # noqa: E402
from helpers.core.labels import LabelScheme  # noqa: E402
from helpers.curation.compare import (  # noqa: E402
    collect_runs,
    comparison_table,
    queue_test_rows,
    read_verified,
    simulated_review,
)
from helpers.curation.eval_set import eval_decisions, eval_scores, read_eval_set  # noqa: E402
from helpers.curation.label_issues import flip_finding  # noqa: E402
from helpers.curation.oracle import ORACLE  # noqa: E402
from helpers.data.demo import EVAL_DIR  # noqa: E402
from helpers.data.layout import Layout, step_name  # noqa: E402
from helpers.data.sets import read_annotations  # noqa: E402
from helpers.data.truth import read_truth  # noqa: E402

ANN_DICT = {"non-parasite": 0, "parasite": 1, "unsure": 2, "unlabeled": -1}
MAX_FPR = 0.01
MIN_GAP = 0.002  # oracle minus SB accuracy below which the plot leaves a setting out (within noise)
RECALL = f"parasite recall at FPR <= {MAX_FPR:g} vs truth"
PER_RUN = {"accuracy vs truth": "accuracy", RECALL: "recall at fpr", "SB-to-oracle gap closed": "gap closed",
           "gain over SB vs truth CI low": "gain CI low", "gain over SB vs truth CI high": "gain CI high",
           "unsure relabel accuracy vs truth": "relabel accuracy", "wrong labels pruned": "pruned",
           "wrong labels fixed": "fixed", "prune precision vs truth": "prune precision",
           "fix precision vs truth": "fix precision"}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def setting_key(noise: str, frac: float, seed: int) -> str:
    return f"{noise}_{frac:g}_seed{seed}"


def measure(noise: str, frac: float, seed: int, args: argparse.Namespace) -> dict:
    """One setting: demo data, the pipeline, and what 06 measured."""
    data = args.work / setting_key(noise, frac, seed)
    start = time.perf_counter()
    write_demo(data, noise, frac, seed, args.eval_size, args.dataset)
    run([sys.executable, "-m", "helpers", "run", "parameters/recommended.yaml",
         "-p", f"data_dir={data}/patient", "-p", f"data_dir_n={data}/neg", "-p", f"data_dir_base={data}/runs",
         "-p", f"truth_path={data}/truth.csv", "-p", f"seed={seed}", "-p", "test_frac=0.2",
         "-p", "wrong_from=out_of_fold", "-p", f"folds={args.folds}", "-p", "which=s_b", "-p", f"max_fpr={MAX_FPR}",
         *(arg for kv in args.param for arg in ("-p", kv)), "--strategies", ",".join(args.strategies), "--jobs", "2"])
    compare = json.loads((data / "runs" / "metrics" / "06_compare.json").read_text())
    table = pd.DataFrame(compare["table"]).set_index("run")
    runs = {name: {short: _number(table.loc[name].get(column)) for column, short in PER_RUN.items()}
            for name in table.index if table.loc[name, "status"] == "ok"}
    gain = pd.DataFrame(compare["review_gain"]["s_b"]).set_index("ranking")
    return {"dataset": args.dataset, "noise": noise, "flip_frac": frac, "seed": seed, "strategies": args.strategies,
            "folds": args.folds,
            "params": args.param, "verdicts": verdict_scores(data, args.strategies, args.budgets, seed),
            "seconds": round(time.perf_counter() - start, 1), "runs": runs, "cleanlab": cleanlab_scores(data),
            "step_seconds": step_seconds(data, args.strategies),
            **({"eval": eval_line(data, args.strategies, seed)} if args.eval_size else {}),
            "review_x_random": {k: float(gain.loc["label quality (cleanlab)", f"x random at {k}"]) for k in ("5%", "10%")}}


def step_seconds(data: Path, strategies: list[str]) -> dict[str, float]:
    """Each strategy's 05 wall seconds as the runner recorded them (two steps at a time: --jobs 2)."""
    state = json.loads((data / "runs" / "reports" / "runner_state.json").read_text())
    return {s: state[step_name("05_relabel_and_classify", s)]["seconds"] for s in strategies
            if step_name("05_relabel_and_classify", s) in state}


def cost_summary(lines: list[dict]) -> pd.DataFrame:
    """Per strategy: its 05's mean wall seconds and their mean ratio to s_fix's in the same setting."""
    rows = [{"strategy": s, "seconds": sec, "x s_fix": sec / x["step_seconds"]["s_fix"]
             if "s_fix" in x["step_seconds"] else np.nan}
            for x in lines if "step_seconds" in x for s, sec in x["step_seconds"].items()]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).groupby("strategy").agg(settings=("seconds", "count"), seconds_05=("seconds", "mean"),
                                                      x_s_fix=("x s_fix", "mean")).round(2)


def write_demo(data: Path, noise: str, frac: float, seed: int, eval_size: int, dataset: str = "cells") -> None:
    """The setting's demo data (and evaluation set), unless already there."""
    run([sys.executable, "-m", "helpers", "demo", str(data), "--dataset", dataset, "--seed", str(seed),
         "--flip-frac", str(frac), "--noise", noise, "--eval-size", str(eval_size), "--if-missing"])


def eval_line(data: Path, strategies: list[str], seed: int) -> dict:
    """Every run's accuracy on the setting's evaluation set (true labels, crops the pipeline never saw),
    its gain over SB with the paired bootstrap interval, and the share of the SB-to-oracle gap closed."""
    layout = _layout(data)
    records = collect_runs(layout, strategies)
    images, truth_pos = read_eval_set(data / EVAL_DIR, layout.scheme.positive)
    start = time.perf_counter()
    calls = eval_decisions({name: r.bundle for name, r in records.items() if r.status == "ok"}, images,
                           layout.scheme.positive)
    table = eval_scores(calls, truth_pos, seed=seed)
    return {"crops": int(len(truth_pos)), "seconds": round(time.perf_counter() - start, 1),
            "runs": {name: {k: _number(v) for k, v in row.items()} for name, row in table.iterrows()}}


def verdict_scores(data: Path, strategies: list[str], budgets: list[float], seed: int) -> list[dict]:
    """06's verdict after the simulated reviewer verified each share in `budgets` of the test-review
    queue (0: the annotations alone), per primary metric: the pick, its accuracy against the truth,
    the regret against the best run (not the oracle), and which runs were significantly above SB."""
    layout = _layout(data)
    truth = read_truth(str(data / "truth.csv"), layout)
    records = collect_runs(layout, strategies)
    queue = queue_test_rows(records, layout)
    out = []
    for share in budgets:
        budget = int(round(share * len(queue)))
        review = simulated_review(queue, truth, budget, layout)
        verified = read_verified("", layout)
        for primary in ("roc_auc", "accuracy"):
            table, result = comparison_table(records, layout, truth, verified=verified, primary=primary, seed=seed)
            truth_accuracy = table["accuracy vs truth"].drop(ORACLE, errors="ignore").dropna()
            pick = result["best"]
            out.append({"budget": share, "reviewed": budget, "wrong_found": review.get("annotations_found_wrong", 0),
                        "primary": primary, "pick": pick, "pick_truth": float(truth_accuracy[pick]),
                        "sb_truth": float(truth_accuracy["s_b"]), "best_truth": float(truth_accuracy.max()),
                        "best_run": str(truth_accuracy.idxmax()),
                        "regret": float(truth_accuracy.max() - truth_accuracy[pick]),
                        "significant": result.get("significantly_above_sb", [])})
    simulated_review(queue, truth, 0, layout)  # leave the run as the pipeline left it
    return out


def verdict_summary(lines: list[dict]) -> pd.DataFrame:
    """Per (noise, flip fraction, primary metric, review budget): the verdict's mean regret (points of
    accuracy against the truth), its pick's mean gain over SB, the worst seed's regret, and the picks."""
    rows = [{"noise": x["noise"], "flip_frac": x["flip_frac"], "primary": v["primary"], "reviewed": v["budget"],
             "regret (points)": 100 * v["regret"], "pick minus SB (points)": 100 * (v["pick_truth"] - v["sb_truth"]),
             "pick": v["pick"]} for x in lines for v in x.get("verdicts", [])]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    keys = ["noise", "flip_frac", "primary", "reviewed"]
    grouped = frame.groupby(keys, sort=False)
    return pd.DataFrame({"mean regret (points)": grouped["regret (points)"].mean(),
                         "worst regret": grouped["regret (points)"].max(),
                         "mean pick minus SB (points)": grouped["pick minus SB (points)"].mean(),
                         "picks": grouped["pick"].agg(lambda p: ", ".join(p))})


def _layout(data: Path) -> Layout:
    return Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"),
                              LabelScheme.from_dict(ANN_DICT))


def cleanlab_scores(data: Path) -> dict:
    """cleanlab on SB's out-of-fold outputs against the planted flips: its issue list's precision and
    recall, and the precision of its label-quality ranking at 90% recall; the same for the neighbour
    flags (under "neighbours") where the run has them."""
    layout = Layout.from_params(str(data / "patient"), str(data / "neg"), str(data / "runs"), LabelScheme.from_dict(ANN_DICT))
    truth = read_truth(str(data / "truth.csv"), layout)
    table = flip_finding(read_annotations(layout.predictions("s_b")), truth, layout.scheme)
    scores = {}
    for method in ("cleanlab", "neighbours"):
        if method not in table.index:  # runs from before neighbour agreement
            continue
        row = table.loc[method]
        scores[method] = {"precision": float(row["precision"]), "recall": float(row["recall"]),
                          "flagged": int(row["flagged"]), "flipped": int(row["flipped"]),
                          "precision at 90% recall": float(row["precision at 90% recall"]),
                          "average precision": float(row["average_precision"])}
    return {**scores["cleanlab"], **({"neighbours": scores["neighbours"]} if "neighbours" in scores else {})}


def backfill(lines: list[dict], args: argparse.Namespace) -> list[dict]:
    """Lines measured before a score existed get it from their setting's folder, when it is still there."""
    for line in lines:
        data = args.work / setting_key(line["noise"], line["flip_frac"], line["seed"])
        if not (data / "runs").is_dir():
            continue
        if "precision at 90% recall" not in line["cleanlab"]:
            line["cleanlab"] = cleanlab_scores(data)
        if args.eval_size and "eval" not in line and not args.summary_only and line.get("dataset", "cells") == "cells":
            write_demo(data, line["noise"], line["flip_frac"], line["seed"], args.eval_size)
            line["eval"] = eval_line(data, line["strategies"], line["seed"])
            write_lines(args.out, lines)  # resumable: scoring a setting takes minutes
    return lines


def eval_summary(lines: list[dict]) -> pd.DataFrame:
    """Per (noise, flip fraction, run), on the evaluation set: mean accuracy, the share of the
    SB-to-oracle gap closed (mean of the seeds' shares, with a 95% t-interval over seeds), and on
    how many seeds the paired interval of the gain over SB lies above zero."""
    rows = []
    for line in lines:
        runs = line.get("eval", {}).get("runs", {})
        for name, m in runs.items():
            rows.append({"noise": line["noise"], "flip_frac": line["flip_frac"], "run": name,
                         **{k: np.nan if v is None else v for k, v in m.items()}})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    grouped = frame.groupby(["noise", "flip_frac", "run"], sort=False)
    out = pd.DataFrame({"eval accuracy": grouped["eval accuracy"].mean(),
                        "gap closed": grouped["eval gap closed"].mean(), "seeds": grouped.size()})
    # over the seeds that have a share (none where the oracle did not beat SB), as the mean above
    bounds = grouped["eval gap closed"].agg(lambda s: mean_interval(list(s.dropna())))
    out["gap closed 95% low"] = [np.nan if low is None else low for low, _ in bounds]
    out["gap closed 95% high"] = [np.nan if high is None else high for _, high in bounds]
    out["gain CI above 0"] = grouped["eval gain CI low"].apply(lambda s: int((s > 0).sum()))
    return out


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not np.isfinite(value)) else float(value)


def summary(lines: list[dict]) -> pd.DataFrame:
    """Per (noise, flip fraction, run): means over seeds, the gap closed from the mean accuracies, and
    on how many seeds the paired bootstrap interval of the gain over SB lies above zero."""
    rows = []
    for line in lines:
        for name, m in line["runs"].items():
            rows.append({"noise": line["noise"], "flip_frac": line["flip_frac"], "seed": line["seed"], "run": name,
                         **{k: np.nan if v is None else v for k, v in m.items()}})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    grouped = frame.groupby(["noise", "flip_frac", "run"], sort=False)
    out = grouped[["accuracy", "recall at fpr", "gap closed", "relabel accuracy", "pruned", "fixed",
                   "prune precision", "fix precision"]].mean().rename(columns={"gap closed": "gap closed (mean of seeds)"})
    out["seeds"] = grouped.size()
    out["gain CI above 0"] = grouped["gain CI low"].apply(lambda s: int((s > 0).sum()))
    out["accuracy spread"] = grouped["accuracy"].agg(lambda s: s.max() - s.min())
    for (noise, frac), part in out.groupby(level=["noise", "flip_frac"]):
        sb, oracle = part.loc[(noise, frac, "s_b"), "accuracy"], part.loc[(noise, frac, "s_oracle"), "accuracy"]
        out.loc[part.index, "gap closed (of mean accuracy)"] = (part["accuracy"] - sb) / (oracle - sb) if oracle > sb else np.nan
    return out


def per_setting(lines: list[dict]) -> pd.DataFrame:
    """Per (noise, flip fraction): cleanlab's precision / recall and the review ratios, means over seeds."""
    rows = [{"noise": x["noise"], "flip_frac": x["flip_frac"], "cleanlab precision": x["cleanlab"]["precision"],
             "cleanlab recall": x["cleanlab"]["recall"],
             "label quality: precision at 90% recall": x["cleanlab"].get("precision at 90% recall", np.nan), "review x random at 5%": x["review_x_random"]["5%"],
             "review x random at 10%": x["review_x_random"]["10%"], "minutes": x["seconds"] / 60} for x in lines]
    frame = pd.DataFrame(rows)
    return frame.groupby(["noise", "flip_frac"], sort=False).agg(["mean", "min"]) if len(frame) else frame


def pivot(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (noise, flip fraction), one column per run: a compact view of one measure."""
    return table[column].unstack("run")


def best_strategies(table: pd.DataFrame, strategies: list[str]) -> pd.DataFrame:
    """Per (noise, flip fraction): the strategy with the highest mean accuracy against the truth."""
    picks = []
    for (noise, frac), part in table.groupby(level=["noise", "flip_frac"], sort=False):
        candidates = part[part.index.get_level_values("run").isin(strategies)]
        if candidates.empty:
            continue
        best = candidates["accuracy"].idxmax()
        picks.append({"noise": noise, "flip_frac": frac, "best": best[2], **candidates.loc[best].to_dict(),
                      "SB": part.loc[(noise, frac, "s_b"), "accuracy"],
                      "oracle": part.loc[(noise, frac, "s_oracle"), "accuracy"]})
    return pd.DataFrame(picks).set_index(["noise", "flip_frac"]) if picks else pd.DataFrame()


def markdown(frame: pd.DataFrame) -> str:
    """A table as markdown (index columns first), numbers to 4 significant digits."""
    flat = frame.reset_index()
    cells = [[f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row] for row in flat.to_numpy()]
    header = [" / ".join(str(part) for part in c if part) if isinstance(c, tuple) else str(c) for c in flat.columns]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in cells)])


def plot(best: pd.DataFrame, path: Path) -> None:
    resolved = best[best["oracle"] - best["SB"] >= MIN_GAP]  # a smaller gap makes the share a ratio of noise
    by_noise = {noise: part.droplevel("noise") for noise, part in resolved.groupby(level="noise")}
    figure = plots.gap_closed_by_noise({k: v["gap closed (of mean accuracy)"] for k, v in by_noise.items()},
                                       "Share of the SB-to-oracle gap closed by the best strategy\n"
                                       f"(3 seeds; settings with a gap of at least {MIN_GAP:.1%})",
                                       labels={k: v["best"] for k, v in by_noise.items()})
    plots.save_png(figure, path)


def eval_plot(lines: list[dict], path: Path) -> None:
    """Each strategy's share of the gap on the evaluation set per setting, with its 95% interval over seeds."""
    table = eval_summary(lines)
    if table.empty:
        return
    frame = table.reset_index()
    frame = frame[~frame["run"].isin(["s_b", ORACLE])]
    frame = pd.DataFrame({"setting": [f"{n} {100 * f:.0f}% ({s} seeds)" for n, f, s in
                                      zip(frame["noise"], frame["flip_frac"], frame["seeds"])],
                          "strategy": frame["run"], "gap": frame["gap closed"],
                          "low": frame["gap closed 95% low"], "high": frame["gap closed 95% high"]})
    plots.save_png(plots.gap_closed_with_intervals(frame, "Share of the SB-to-oracle gap closed on the evaluation set"),
                   path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fracs", default="0.20,0.10,0.03")
    parser.add_argument("--noise", default="uniform,systematic")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default="s_2thr,s_prune,s_fix,s_2thr_fix,s_soft_fix")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--budgets", default="0,0.05,0.10,0.20,1",
                        help="shares of the test rows the simulated reviewer verifies before each verdict "
                             "(1: every test row, the same rule on the truth: the least regret it can reach)")
    parser.add_argument("--dataset", choices=("cells", "digits"), default="cells",
                        help="cells: the generated demo; digits: scikit-learn's real handwritten digits (no evaluation "
                             "set: all 1,797 are used; give it its own --work and --out)")
    parser.add_argument("--eval-size", type=int, default=10_000,
                        help="crops of each setting's evaluation set (true labels, never seen by the pipeline) every "
                             "run is also scored on; settings measured without one get it when their --work folder "
                             "is still there; 0: none")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curation_bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/curation.jsonl")
    parser.add_argument("--plot", type=Path, default=None, help="the plot of the gaps closed (default: --out as .png; "
                        "the evaluation-set plot goes beside it as NAME_eval.png)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="another pipeline parameter, e.g. -p rounds=2 (use its own --out and --work)")
    parser.add_argument("--summary-only", action="store_true", help="rebuild the tables and plot from --out")
    parser.add_argument("--reverdict", action="store_true",
                        help="measure the verdict again on every finished setting whose --work folder is still there "
                             "(after a change of 06's rule; no training)")
    args = parser.parse_args()
    args.plot = args.plot or args.out.with_suffix(".png")  # a results file and its plot share a name
    args.strategies = args.strategies.split(",")
    if args.dataset == "digits":
        args.eval_size = 0
    args.budgets = [float(b) for b in args.budgets.split(",")]
    done = {setting_key(x["noise"], x["flip_frac"], x["seed"]) for x in read_lines(args.out)}
    if not args.summary_only:
        for noise in args.noise.split(","):
            for frac in map(float, args.fracs.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    if setting_key(noise, frac, seed) in done:
                        continue
                    append_line(args.out, measure(noise, frac, seed, args))
    lines = backfill(read_lines(args.out), args)
    if args.reverdict:
        for line in lines:
            data = args.work / setting_key(line["noise"], line["flip_frac"], line["seed"])
            if (data / "runs").is_dir():
                line["verdicts"] = verdict_scores(data, line["strategies"], args.budgets, line["seed"])
    if lines:  # keep what was backfilled: the work folders are temporary
        write_lines(args.out, lines)
    table = summary(lines)
    if table.empty:
        print("nothing measured yet")
        return
    best = best_strategies(table, args.strategies)
    views = {"Test accuracy against the truth (mean over seeds)": pivot(table, "accuracy"),
             "Share of the SB-to-oracle gap closed (from the mean accuracies)": pivot(table, "gap closed (of mean accuracy)"),
             "Seeds whose paired bootstrap 95% interval of the gain over SB lies above 0":
                 pivot(table, "gain CI above 0"),
             "Every run (means over seeds)": table,
             "Flip finding (cleanlab on SB, out-of-fold) and review efficiency (label quality), per setting":
                 per_setting(lines),
             "The best strategy per setting (highest mean accuracy against the truth)": best,
             "The verdict's regret per share of the test rows reviewed (means over seeds)": verdict_summary(lines),
             "On the evaluation set (true labels, crops the pipeline never saw): accuracy, gap closed with a 95% "
             "interval over seeds, seeds whose gain over SB is significant": eval_summary(lines),
             "What each strategy's 05 costs (wall seconds, two steps at a time) against s_fix's": cost_summary(lines)}
    for title, frame in views.items():
        print(f"### {title}\n\n{markdown(frame)}\n")
    plot(best, args.plot)
    eval_plot(lines, args.plot.with_name(f"{args.plot.stem}_eval.png"))
    print(f"plots: {args.plot}, {args.plot.with_name(f'{args.plot.stem}_eval.png')}")


if __name__ == "__main__":
    main()
