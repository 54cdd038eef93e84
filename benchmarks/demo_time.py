"""How long `make demo` takes, and whether a faster demo still shows what the demo is for.

    .venv/bin/python benchmarks/demo_time.py [--seeds 0,1,2] [--label demo.yaml] [-p KEY=VALUE ...]
        [--strategies s_1a,...] [--work /tmp/demo_time] [--out benchmarks/results/demo_time.jsonl]

Per seed: the demo's data generated with that seed (`python -m helpers demo DIR --seed S`, not timed),
then `python -m helpers run parameters/demo.yaml` on it (with `seed=S` and the -p overrides) into a
fresh runs folder, timed as a whole as `make demo` runs it. From 06 it records, against the hidden
truth: whether the seed's six strategies ran, the clean-label oracle's lead over SB (the demo shows
a gap worth curating when it is at least 1 point), the verdict after the simulated review, and how
far its pick is from the best run by truth (the oracle aside; within 0.5 points is the target), and
every run's accuracy against the truth (which strategies another beats on every seed). One
JSON line per (label, seed) in --out; a rerun skips those it has. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402

SEED_STRATEGIES = ("s_1a", "s_1b", "s_2a", "s_2b", "s_3a", "s_3b")
MIN_ORACLE_LEAD = 0.01  # the oracle at least 1 point above SB against the truth
MAX_PICK_REGRET = 0.005  # the verdict's pick within 0.5 points of the best run by truth


def demo_data(work: Path, seed: int) -> Path:
    data = work / f"data_seed{seed}"
    if not (data / "truth.csv").is_file():
        subprocess.run([sys.executable, "-m", "helpers", "demo", str(data), "--seed", str(seed)], check=True, cwd=ROOT)
    return data


def run_demo(data: Path, runs: Path, seed: int, params: list[str], strategies: str) -> float:
    """The demo's pipeline on `data` into a fresh `runs`; its wall time in seconds."""
    shutil.rmtree(runs, ignore_errors=True)
    overrides = [f"data_dir={data}/patient", f"data_dir_n={data}/neg", f"data_dir_base={runs}",
                 f"truth_path={data}/truth.csv", f"overrides_path={runs}/overrides.csv",
                 f"verified_path={runs}/verified.csv", f"seed={seed}", *params]
    cmd = [sys.executable, "-m", "helpers", "run", "parameters/demo.yaml", *(a for kv in overrides for a in ("-p", kv))]
    if strategies:
        cmd += ["--strategies", strategies]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def what_it_shows(runs: Path) -> dict:
    """From 06: the oracle's lead over SB, the verdict's pick and its distance to the best run, by truth."""
    compare = json.loads((runs / "metrics" / "06_compare.json").read_text())
    table = {row["run"]: row for row in compare["table"]}
    truth = {name: row.get("accuracy vs truth") for name, row in table.items() if row.get("status") == "ok"}
    candidates = {name: acc for name, acc in truth.items() if name != "s_oracle" and acc is not None}
    best = max(candidates, key=candidates.get)
    pick = compare["verdict"]["best"]
    return {"seed_strategies_ran": all(table.get(s, {}).get("status") == "ok" for s in SEED_STRATEGIES),
            "sb_truth": truth["s_b"], "oracle_truth": truth.get("s_oracle"),
            "oracle_lead": truth["s_oracle"] - truth["s_b"] if truth.get("s_oracle") is not None else None,
            "pick": pick, "pick_truth": truth.get(pick), "best_run": best, "best_truth": candidates[best],
            "pick_regret": candidates[best] - truth[pick],
            "verdict": compare["verdict"]["text"].split(";")[0],
            "run_truth": truth,
            "step_seconds": {k: v["seconds"] for k, v in
                             json.loads((runs / "reports" / "runner_state.json").read_text()).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--label", default="demo.yaml", help="names this profile in the results file")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--strategies", default="", help="comma-separated (default: demo.yaml's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo_time"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_time.jsonl")
    args = parser.parse_args()
    done = {(line["label"], line["seed"]) for line in read_lines(args.out)}
    for seed in (int(s) for s in args.seeds.split(",")):
        if (args.label, seed) in done:
            continue
        data = demo_data(args.work, seed)
        runs = args.work / f"runs_seed{seed}"
        seconds = run_demo(data, runs, seed, args.param, args.strategies)
        shows = what_it_shows(runs)
        row = {"label": args.label, "seed": seed, "params": args.param, "strategies": args.strategies,
               "seconds": round(seconds, 1), **shows,
               "shows_what_it_is_for": bool(shows["seed_strategies_ran"] and shows["oracle_lead"] is not None
                                            and shows["oracle_lead"] >= MIN_ORACLE_LEAD
                                            and shows["pick_regret"] <= MAX_PICK_REGRET)}
        print(json.dumps({k: v for k, v in row.items() if k != "step_seconds"}), flush=True)
        append_line(args.out, row)


if __name__ == "__main__":
    main()
