"""Write docs/benchmarks.md and benchmarks/README.md from benchmarks/results/*.jsonl and the scripts.

    .venv/bin/python benchmarks/write_docs.py [--check]     (make docs)

Every figure in docs/benchmarks.md comes from a results file, never by hand: the current measurements
as tables (share of the SB-to-oracle gap closed per seed, recipe accuracy, the demo's time), each
superseded investigation as one line with its results file. benchmarks/README.md lists every script
of this folder with the question it answers (its docstring's first line), its command and the
results files it names. With --check nothing is written: the files that would change are listed and
the exit status is 1 if any (the tests run it).
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
from _measure import mean_interval  # noqa: E402
DOC = ROOT / "docs" / "benchmarks.md"
SCRIPTS_README = BENCHMARKS / "README.md"

# The curation measurements that stand for today's recipe and flags (recommended.yaml), in reading
# order, each with what it asks; every other curation file is a superseded investigation (SUPERSEDED).
CURRENT_CURATION = {
    "neighbours_tta.jsonl": "The recommended curation at 20% flips (neighbour vote, view-mean features, k = 120)",
    "recommended_curation.jsonl": "The recommended curation at 10% flips",
    "rounds_recommended.jsonl": "Two rounds of curation with the recommended flags (`rounds: 2`)",
    "rounds_without_folds.jsonl": "Two rounds, the second without fold models (`round_folds: false`)",
    "curation_digits.jsonl": "The digits (real images), uniform 20%: the recommended curation",
    "curation_digits_min_steps.jsonl": "The digits with recommended.yaml's step floor (`min_steps: 250`)",
    "curation_digits_fix_threshold.jsonl": "The digits: `s_fix` at a lower `fix_threshold`",
    "cotrain.jsonl": "Co-training (`s_cotrain`, its defaults) beside pruning and fixing, uniform and systematic at 10% and 20%",
    "cotrain_digits.jsonl": "The digits, uniform 20% and 5%: co-training beside pruning and fixing",
}
# files whose section also gives each strategy's gap with its 95% interval over seeds and its 05's cost
WITH_INTERVALS = ("cotrain.jsonl", "cotrain_digits.jsonl")
EVAL_PLOTS = {"cotrain.jsonl": "cotrain_eval.png"}  # curation.py writes it beside its --plot
AT_TODAYS_FLOOR = ("cotrain.jsonl", "cotrain_digits.jsonl")  # curation files measured after min_steps became 500
SUPERSEDED = {
    "curation.jsonl": "the first curation benchmark, on the demo generator before it had slides (commit 1fdde1f)",
    "verdict.jsonl": "curation with slide-grouped out-of-fold folds and cleanlab's flags (grouped folds flag "
                     "less precisely: see fold_groups.jsonl)",
    "verdict_nogroup.jsonl": "the same without any grouping (test rows share slides with training rows)",
    "fold_groups.jsonl": "the test split grouped by slide, the folds not (`group_folds: false`), cleanlab's flags",
    "consistency.jsonl": "consistency training (`s_fix_cons`) on cleanlab's flags, before neighbour flags",
    "neighbours.jsonl": "neighbour flags on the image's own features, k = 60",
    "rounds.jsonl": "two rounds on the image's own features, k = 60",
    "rounds_without_folds_image.jsonl": "two rounds without fold models on the image's own features, k = 60",
}
DIAGNOSTICS = {
    "curation_bounds.jsonl": "what a perfect flip detector could close: SB retrained with every planted flip pruned "
                             "(`prune_oracle`) or fixed (`fix_oracle`)",
    "prune_cuts.jsonl": "where the neighbour vote is cut, and the vote without its false alarms or with its misses "
                        "(script removed in issue 34; in git history)",
    "prune_cuts_strict.jsonl": "stricter cuts of the vote on one seed (same script)",
    "neighbour_flags.jsonl": "average precision of the flag ranking per feature space and k (script removed in "
                             "issue 34)",
    "flag_errors.jsonl": "who the vote's false alarms are (script removed in issue 34)",
}


def read(name: str) -> list[dict]:
    path = RESULTS / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%".replace("-0%", "0%")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(r)} |" for r in rows), ""]


# ---------------------------------------------------------------- curation (benchmarks/curation.py)

def run_scores(record: dict) -> dict[str, dict]:
    """Per run of one curation setting: its gap closed and whether its gain over SB is significant,
    on the evaluation set where the record has one, else on the test rows against the truth."""
    if record.get("eval"):
        return {name: {"gap": r.get("eval gap closed"), "significant": (r.get("eval gain CI low") or 0) > 0,
                       "accuracy": r.get("eval accuracy")} for name, r in record["eval"]["runs"].items()}
    return {name: {"gap": r.get("gap closed"), "significant": (r.get("gain CI low") or 0) > 0,
                   "accuracy": r.get("accuracy")} for name, r in record["runs"].items()}


def setting_of(record: dict) -> str:
    return f"{record.get('dataset', 'cells')}, {record['noise']} {100 * record['flip_frac']:.0f}%"


def curation_table(records: list[dict]) -> list[str]:
    """Rows: settings; columns: SB and the oracle's accuracy (mean), then each strategy's share of the
    gap closed: the mean over seeds, then each seed's (* where its gain over SB is significant)."""
    shared = set.intersection(*(set(r.get("params", [])) for r in records))
    by_setting: dict[str, list[dict]] = defaultdict(list)
    for record in records:  # a file measured with more than one set of -p: each its own row
        extra = [p for p in record.get("params", []) if p not in shared]
        by_setting[setting_of(record) + "".join(f", `{p}`" for p in extra)].append(record)
    strategies = list(dict.fromkeys(s for r in records for s in run_scores(r) if s not in ("s_b", "s_oracle")))
    rows = []
    for setting, group in by_setting.items():
        scores = [run_scores(r) for r in sorted(group, key=lambda r: r["seed"])]
        row = [setting, str(len(scores)),
               *(f"{mean(s[name]['accuracy'] for s in scores):.4f}" for name in ("s_b", "s_oracle"))]
        for name in strategies:
            gaps = [s[name] for s in scores if name in s and s[name]["gap"] is not None]
            row.append(f"**{pct(mean(g['gap'] for g in gaps))}** ("
                       + " / ".join(f"{pct(g['gap'])}{'*' if g['significant'] else ''}" for g in gaps) + ")"
                       if gaps else "")
        rows.append(row)
    return table(["setting", "seeds", "SB", "oracle", *(f"`{s}`" for s in strategies)], rows)


def interval_table(records: list[dict]) -> list[str]:
    """Per setting and strategy: the gap closed, mean over seeds with its 95% t-interval, the seeds whose
    paired interval of the gain over SB excludes zero, and the 05's wall seconds against s_fix's."""
    by_setting: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_setting[setting_of(record)].append(record)
    rows = []
    for setting, group in by_setting.items():
        scores = [run_scores(r) for r in group]
        for name in [n for n in scores[0] if n not in ("s_b", "s_oracle")]:
            gaps = [s[name]["gap"] for s in scores if name in s and s[name]["gap"] is not None]
            low, high = mean_interval(gaps)
            costs = [r["step_seconds"][name] / r["step_seconds"]["s_fix"] for r in group
                     if name in r.get("step_seconds", {}) and "s_fix" in r["step_seconds"]]
            rows.append([setting, f"`{name}`", str(len(gaps)), pct(mean(gaps)) if gaps else "n/a",
                         f"{pct(low)} to {pct(high)}" if low is not None else "n/a",
                         f"{sum(s[name]['significant'] for s in scores if name in s)} of {len(scores)}",
                         f"{mean(costs):.1f}x" if costs else "n/a"])
    return table(["setting", "strategy", "seeds", "gap closed", "95% interval over seeds",
                  "seeds with a significant gain over SB", "05 wall time / s_fix's"], rows)


def best_line(records: list[dict]) -> str:
    """The strategy with the largest mean gap closed over every setting and seed of a file."""
    gaps: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for name, score in run_scores(record).items():
            if name not in ("s_b", "s_oracle") and score["gap"] is not None:
                gaps[name].append(score["gap"])
    if not gaps:
        return "no strategy measured"
    best = max(gaps, key=lambda n: mean(gaps[n]))
    settings = sorted({setting_of(r) for r in records})
    return f"best `{best}` {pct(mean(gaps[best]))} of the gap on average ({'; '.join(settings)}; {len(records)} runs)"


def regret_table(names: list[str]) -> list[str]:
    """The verdict's pick against the best run by truth, per budget of simulated review (accuracy as the
    primary metric): mean regret in points and how often the pick was the best run."""
    per_budget: dict[float, list[dict]] = defaultdict(list)
    for name in names:
        for record in read(name):
            for v in record.get("verdicts", []):
                if v["primary"] == "accuracy":
                    per_budget[v["budget"]].append(v)
    rows = [[f"{100 * budget:.0f}%", str(len(vs)), f"{100 * mean(v['regret'] for v in vs):.2f}",
             f"{sum(v['regret'] <= 1e-9 for v in vs)} of {len(vs)}"] for budget, vs in sorted(per_budget.items())]
    return table(["test rows reviewed", "settings", "mean regret (points)", "pick was the best run"], rows)


def noise_setting(setting: str) -> str:
    """A setting's name without its seed: uniform_0.2_seed1 -> uniform 0.2."""
    return setting.rsplit("_seed", 1)[0].replace("_", " ")


def cotrain_settings_table(records: list[dict]) -> list[str]:
    """Per data set, noise setting and variant of benchmarks/cotrain_settings.py: the seeds measured, the
    mean accuracy against the truth, its change from `plain` on the same seeds with the paired 95%
    interval, the parasite recall and the training seconds."""
    by: dict[tuple[str, str, str], dict[str, dict]] = defaultdict(dict)
    for r in records:
        by[(r.get("data", "cells"), noise_setting(r["setting"]), r["variant"])][r["setting"]] = r
    rows = []
    for (data, setting, variant), runs in sorted(by.items(), key=lambda kv: (*kv[0][:2], kv[0][2] != "plain", kv[0][2])):
        plain = by.get((data, setting, "fixed_plain" if variant.startswith("fixed_") else "plain"), {})
        diffs = [100 * (r["eval_accuracy"] - plain[s]["eval_accuracy"]) for s, r in runs.items() if s in plain]
        low, high = mean_interval(diffs)
        settings = ", ".join(f"`{k}: {v}`" for k, v in next(iter(runs.values()))["settings"].items()) or "one network"
        unramped = any("ramped up" in r.get("measured_as", "") for r in runs.values())
        rows.append([data, setting, f"`{variant}`" + (" (unlabeled loss not yet ramped up)" if unramped else ""),
                     settings, str(len(runs)), f"{mean(r['eval_accuracy'] for r in runs.values()):.4f}",
                     "" if variant in ("plain", "fixed_plain") or not diffs else
                     f"{mean(diffs):+.2f}" + ("" if low is None else f" [{low:+.2f}, {high:+.2f}]"),
                     f"{mean(r['eval_recall'] for r in runs.values()):.3f}",
                     f"{mean(r['train_seconds'] for r in runs.values()):.0f}"])
    return table(["data", "setting", "variant", "settings", "seeds", "accuracy", "minus plain (points) [95%]",
                  "parasite recall", "train s"], rows)


def cotrain_division_table(records: list[dict]) -> list[str]:
    """Per data set and variant of benchmarks/cotrain_division.py, means over settings of the epoch means:
    the flipped labels left in the set, the shares of flipped and of true labels divided out, and the
    accuracy of the guesses for the rows trained without a label."""
    by: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in records:
        by[(r["data"], noise_setting(r["setting"]), r["variant"])].append(r["mean"])

    def avg(runs: list[dict], key: str) -> str:
        values = [m[key] for m in runs if m.get(key) is not None and m[key] == m[key]]  # NaN: no flipped row left
        return f"{mean(values):.2f}" if values else "-"
    rows = [[data, setting, f"`{variant}`", str(len(runs)), f"{mean(m['flipped rows'] for m in runs):.0f}",
             f"{mean(m['labelled'] + m['unlabeled'] for m in runs):.0f}", avg(runs, "flipped divided out"),
             avg(runs, "true divided out"), avg(runs, "guess accuracy")]
            for (data, setting, variant), runs in sorted(by.items())]
    return table(["data", "setting", "variant", "seeds", "flipped labels in the set", "rows (labelled + unlabeled)",
                  "flipped divided out",
                  "true labels divided out", "guess accuracy (rows without a label)"], rows)


# ---------------------------------------------------------------- diagnostics

def eval_runs_table(records: list[dict]) -> list[str]:
    """Per setting: each retrained run's share of the gap closed on the evaluation set."""
    names = list(dict.fromkeys(n for r in records for n in r["eval"] if n not in ("s_b", "s_oracle")))
    rows = [[r["setting"], *(pct(r["eval"].get(n, {}).get("eval gap closed")) for n in names)] for r in records]
    return table(["setting", *(f"`{n}`" for n in names)], rows)


def diagnostic_figures(name: str, records: list[dict]) -> str:
    if name == "neighbour_flags.jsonl":
        flags = list(records[0]["flags"])
        best = max(flags, key=lambda f: mean(r["flags"][f]["average precision"] for r in records))
        return (f"best ranking {best} (average precision {mean(r['flags'][best]['average precision'] for r in records):.3f}"
                f" over {len(records)} settings; cleanlab {mean(r['flags']['cleanlab']['average precision'] for r in records):.3f})")
    if name == "flag_errors.jsonl":
        alarms = [r["false alarms"] for r in records]
        return (f"false alarms per setting {' / '.join(str(a['rows']) for a in alarms)}, of them labelled parasite "
                f"{' / '.join(str(a['labelled parasite']) for a in alarms)}, mean hardness "
                f"{mean(a['mean hardness'] for a in alarms):.2f} (clean rows "
                f"{mean(r['clean rows']['mean hardness'] for r in records):.2f}); the oracle gets "
                f"{' / '.join(str(a['oracle wrong']) for a in alarms)} of them wrong too")
    runs = [n for n in records[0]["eval"] if n not in ("s_b", "s_oracle")]
    return "; ".join(f"`{n}` {' / '.join(pct(r['eval'][n]['eval gap closed']) for r in records)} of the gap"
                     for n in runs)


# ---------------------------------------------------------------- recipe, speed

def recipe_setting(record: dict) -> str:
    """A recipe run's data setting in words: cells, systematic 10%, 1,000 crops."""
    data = record.get("data") or {"dataset": "cells (demo)"}
    where = f"{data['dataset']}" + (f", {data.get('noise')} {100 * data['flip_frac']:.0f}%" if "flip_frac" in data else "")
    if "n_patient" in data:
        where += f", {data['n_patient'] + data['n_neg']:,} crops"
    return where


def recipe_table(records: list[dict]) -> list[str]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(recipe_setting(r), r["recipe"], r["labels"])].append(r)
    rows = [[where, f"`{recipe}`", labels, str(len(rs)), f"{mean(r['accuracy'] for r in rs):.4f}",
             f"{mean(r['ece'] for r in rs):.3f}", f"{mean(r['train_seconds'] for r in rs):.1f}"]
            for (where, recipe, labels), rs in sorted(groups.items())]
    return table(["data", "recipe", "labels", "seeds", "test accuracy vs truth", "ECE", "train s"], rows)


def truth_accuracy(record: dict) -> float:
    """A recipe run's accuracy against the truth: on the evaluation set where it has one, else the test rows."""
    return record.get("eval_accuracy", record["accuracy"])


def recipe_change_table(records: list[dict], baseline: str = "recommended.yaml") -> list[str]:
    """Per data setting, recipe and labels: the seeds, the mean accuracy against the truth (on the
    evaluation set where the run has one, else the test rows), its change from `baseline` on the same
    seeds with the paired 95% t-interval, the epochs trained and the training seconds."""
    runs: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in records:
        runs[(recipe_setting(r), r["labels"], r["recipe"])][r["seed"]] = r
    rows = []
    for (where, labels, recipe), by_seed in sorted(runs.items(), key=lambda kv: (*kv[0][:2], kv[0][2] != baseline)):
        accuracy = {seed: truth_accuracy(r) for seed, r in by_seed.items()}
        base = runs.get((where, labels, baseline), {})
        diffs = [100 * (accuracy[s] - truth_accuracy(base[s])) for s in accuracy if s in base]
        low, high = mean_interval(diffs)
        change = ("" if recipe == baseline or not diffs else
                  f"{mean(diffs):+.2f}" + ("" if low is None else f" [{low:+.2f}, {high:+.2f}]"))
        scored_on = "evaluation set" if all("eval_accuracy" in r for r in by_seed.values()) else "test rows"
        rows.append([where, labels, f"`{recipe}`", str(len(by_seed)), scored_on, f"{mean(accuracy.values()):.4f}",
                     change, f"{mean(r['epochs_run'] for r in by_seed.values()):.0f}",
                     f"{mean(r['train_seconds'] for r in by_seed.values()):.1f}"])
    return table(["data", "labels", "recipe", "seeds", "scored on", "accuracy vs truth",
                  f"minus `{baseline}` (points) [95%]", "epochs", "train s"], rows)


def demo_table(records: list[dict]) -> list[str]:
    rows = [[r["label"], str(r["seed"]), f"{int(r['seconds'] // 60)} min {r['seconds'] % 60:.0f} s", f"{100 * r['oracle_lead']:+.1f}",
             f"`{r['pick']}` {r['pick_truth']:.4f}", f"`{r['best_run']}` {r['best_truth']:.4f}",
             f"{100 * r['pick_regret']:.2f}", "yes" if r["shows_what_it_is_for"] else "no"] for r in records]
    return table(["profile", "seed", "wall time", "oracle over SB (points)", "verdict's pick vs truth",
                  "best run vs truth", "pick's regret (points)", "shows what it is for"], rows)


def scale_lines(records: list[dict]) -> list[str]:
    return [f"- {r['n']:,} crops on {r['device']} (`{r['strategy']}`, {r['folds']} folds): the pipeline in "
            f"{r['pipeline_seconds'] / 60:.1f} min, 03 in {next(s['seconds'] for s in r['steps'] if s['step'].startswith('03')):.0f} s "
            f"(`scale.jsonl`, {r.get('measured', '')})" for r in records]


# ---------------------------------------------------------------- the pages

def benchmarks_page() -> str:
    lines = ["# Benchmarks", "",
             "Generated by `make docs` (`benchmarks/write_docs.py`) from `benchmarks/results/*.jsonl`; a test fails "
             "when this page is stale. Each results file was written by the script `benchmarks/README.md` names. "
             "\"Share of the gap\" is a run's accuracy against the truth minus SB's, over the clean-label oracle's "
             "minus SB's (both trained with the same recipe), on the evaluation set of 10,000 new crops where the "
             "setting has one, else on the test rows; per seed in brackets, `*` where the paired 95% interval of "
             "the gain over SB excludes zero.", ""]
    lines += ["## The demo: time and what it shows", "",
              "`benchmarks/demo_time.py`: `make demo`'s pipeline on the demo data of three seeds, timed whole on 2 "
              "cores (data generation excluded), and whether it still shows what it is for: the seed's six "
              "strategies run, the oracle at least 1 point above SB against the truth, and the verdict after the "
              "simulated review within 0.5 points of the best run by truth (`demo_time.jsonl`).", "",
              *demo_table(read("demo_time.jsonl"))]
    lines += ["## Curation: share of the SB-to-oracle gap closed", "",
              f"{' and '.join(f'`{n}`' for n in AT_TODAYS_FLOOR)} were measured with recommended.yaml as it is "
              "(`min_steps: 500`); the other curation files with its step floor at `min_steps: 250` (500 since "
              "`recipe_length.jsonl`: the demo-sized cells' SB then trains 11 epochs, not 10, and the digits about "
              "twice as many as before).", ""]
    for name, question in CURRENT_CURATION.items():
        records = read(name)
        if records:
            params = " ".join(f"`-p {p}`" for p in records[0].get("params", [])
                              if all(p in r.get("params", []) for r in records))
            lines += [f"### {question}", "", f"`{name}`; `benchmarks/curation.py` with {params}.", "",
                      *curation_table(records), *(interval_table(records) if name in WITH_INTERVALS else [])]
            if name in EVAL_PLOTS:
                lines += [f"![{question}](../benchmarks/results/{EVAL_PLOTS[name]})", ""]
    settings = read("cotrain_settings.jsonl")
    if settings:
        lines += ["### Co-training's settings", "",
                  "`cotrain_settings.jsonl` (`benchmarks/cotrain_settings.py`): `s_cotrain`'s 05 input of settings "
                  "of `cotrain.jsonl` and `cotrain_digits.jsonl` trained again per variant (recommended.yaml), the "
                  "cells on the evaluation set, the digits on their test rows; `plain` is one network on the same "
                  "set, as `s_prune` trains it; `restored_` variants train on the set with the flagged labels given "
                  "back, `fixed_` variants on `s_fix`'s set (compared with `fixed_plain`, which is `s_fix`'s 05). "
                  "Each setting's line is in the file.", "", *cotrain_settings_table(settings)]
    schedule = read("cotrain_schedule.jsonl")
    if schedule:
        lines += ["### Co-training's schedule", "",
                  "`cotrain_schedule.jsonl` (`benchmarks/cotrain_settings.py`, recommended.yaml with `min_steps: 500`): "
                  "as above, with DivideMix's long schedule: 30 epochs (`plain_30ep` one network, `long` the pair), "
                  "with its MixUp (`long_mixup4`) and its unlabeled loss (`long_dividemix`). The digits' small sets "
                  "already train more than 30 epochs under the step floor, so there `epochs: 30` changes nothing "
                  "and `long_mixup4` is MixUp alone. The sets are those of the 20% settings in `cotrain_settings.jsonl` "
                  "(flagged by SB trained with the floor at 250); every fit ran beside other benchmarks, so its seconds are only "
                  "comparable within this table.", "", *cotrain_settings_table(schedule)]
    division = read("cotrain_division.jsonl")
    if division:
        lines += ["`cotrain_division.jsonl` (`benchmarks/cotrain_division.py`): the first network's division, every "
                  "co-training epoch, against the truth (means over the epochs, then over the settings).", "",
                  *cotrain_division_table(division)]
    lines += ["### The verdict's regret", "",
              "Over the current curation files: the pick of the verdict (accuracy, step-down corrected tests "
              "against SB) against the best run by truth, per share of the test rows a simulated reviewer "
              "verified first.", "", *regret_table(list(CURRENT_CURATION))]
    lines += ["### Superseded curation investigations", ""]
    lines += [f"- `{name}`: {what}; {best_line(read(name))}." for name, what in SUPERSEDED.items() if read(name)]
    lines += ["", "## Bounds and diagnostics of the neighbour vote", ""]
    bounds = read("curation_bounds.jsonl")
    if bounds:
        lines += ["`curation_bounds.jsonl` (`benchmarks/curation_bounds.py`): a perfect flip detector, then prune "
                  "or fix; evaluation set.", "", *eval_runs_table(bounds)]
    lines += [f"- `{name}`: {what}; {diagnostic_figures(name, read(name))}." for name, what in DIAGNOSTICS.items()
              if name != "curation_bounds.jsonl" and read(name)]
    lines += ["", "## Training recipe", "",
              "`benchmarks/recipe.py`: SB on the noisy labels and the oracle on the true ones, test rows against the "
              "truth, means over seeds (`recipe.jsonl`: the demo cells; `recipe_digits.jsonl`; `recipe_gpu.jsonl`: "
              "recommended-gpu.yaml on a GPU; `recipe_mixup.jsonl`: MixUp on both data sets, measured on one day "
              "beside recommended.yaml; `recipe_steps.jsonl`: how long to train, on the digits and on the cells at "
              "two sizes, measured on one day; `recipe_elr.jsonl`: early-learning regularization at four weights, "
              "the same day; `recipe_length.jsonl`: how long to train, over more seeds, the cells scored on an "
              "evaluation set of new crops, each recipe paired with recommended.yaml on the same seeds).", ""]
    for name in ("recipe.jsonl", "recipe_digits.jsonl", "recipe_gpu.jsonl", "recipe_mixup.jsonl", "recipe_steps.jsonl",
                 "recipe_elr.jsonl"):
        if read(name):
            lines += [f"### `{name}`", "", *recipe_table(read(name))]
    if read("recipe_length.jsonl"):
        lines += ["### `recipe_length.jsonl`", "", *recipe_change_table(read("recipe_length.jsonl"))]
    lines += ["## Scale", "", *scale_lines(read("scale.jsonl")), ""]
    return "\n".join(lines).rstrip() + "\n"


def script_entry(path: Path) -> list[str]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraphs = doc.split("\n\n")
    question = " ".join(paragraphs[0].split())
    command = next((p.strip() for p in paragraphs[1:] if "benchmarks/" in p and p.startswith("    ")), "")
    results = sorted(set(re.findall(r"benchmarks/results/([\w.]+\.(?:jsonl|png))", path.read_text())))
    out = [f"## `{path.name}`", "", question, ""]
    if command:
        out += ["```", *(line[4:] if line.startswith("    ") else line for line in command.splitlines()), "```", ""]
    out += [f"Results: {', '.join(f'`results/{r}`' for r in results) if results else 'printed, none kept'}.", ""]
    return out


def scripts_page() -> str:
    lines = ["# Benchmark scripts", "",
             "Generated by `make docs` from each script's docstring: the question it answers, its command and the "
             "results files it writes (in `results/`). Figures reach `docs/benchmarks.md` by the same command. "
             "`_measure.py` holds what the scripts share.", ""]
    for path in sorted(BENCHMARKS.glob("*.py")):
        if not path.name.startswith("_"):
            lines += script_entry(path)
    return "\n".join(lines).rstrip() + "\n"


def pages() -> dict[Path, str]:
    return {DOC: benchmarks_page(), SCRIPTS_README: scripts_page()}


def stale(write: bool = False) -> list[Path]:
    """The generated pages that differ from what the results and scripts give (rewritten when `write`)."""
    drifted = [path for path, text in pages().items() if not path.is_file() or path.read_text() != text]
    if write:
        for path in drifted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(pages()[path])
    return drifted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    args = parser.parse_args()
    drifted = stale(write=not args.check)
    for path in drifted:
        print(f"{'stale' if args.check else 'written'}: {path.relative_to(ROOT)}")
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    sys.exit(main())
