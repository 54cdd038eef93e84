"""The pipeline at scale: N generated crops through 01 -> 02 -> 03 (SB, out-of-fold) -> one fixing strategy -> 06.

    .venv/bin/python benchmarks/scale.py --n 100000 [--device auto|cpu|cuda] [--work /tmp/scale_bench]
        [--strategy s_fix] [--folds 3] [-p KEY=VALUE ...] [--out benchmarks/results/scale.jsonl] [--force]

Per step it prints the wall time, images per second (N / wall time; for training steps also the
fit's own training images per second), the peak host memory of the step's process and kernel, and
on a GPU the peak GPU memory of its training. The data come from the demo generator (two thirds
patient crops, a third negative control, 10% systematic flips, slides of 250), written once per N;
the recipe is parameters/recommended.yaml, with parameters/recommended-gpu.yaml on top on a GPU.

Resumable: the runner skips every step already done for the same N, parameters and code, so a
stopped run continues where it was; each finished N is one JSON line of --out (a rerun prints it
again unless --force).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line, read_lines  # noqa: E402

from helpers.run.measure import run_measured  # noqa: E402

STEPS = ("01_combine", "02_split", "03_baselines_SA_SB", "04_differentiator", "05_relabel_and_classify", "06_compare")
TRAINED = {"03_baselines_SA_SB": "s_b", "05_relabel_and_classify": ""}  # step -> run whose bundle it trains ("" = strategy)


def resolved_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_data(folder: Path, n: int) -> dict:
    """The N crops (written once), and what writing them cost."""
    n_patient = round(n * 2 / 3)
    cmd = [sys.executable, "-m", "helpers", "demo", str(folder), "--n-patient", str(n_patient), "--n-neg",
           str(n - n_patient), "--seed", "0", "--if-missing"]
    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    proc, peak = run_measured(cmd, None, folder)
    if proc.returncode:
        raise SystemExit(f"generating the data failed:\n{proc.stderr}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_host_mb": round(peak / 2**20, 1)}


def run_pipeline(data: Path, args: argparse.Namespace, device: str) -> float:
    params = ["parameters/recommended.yaml"] + (["parameters/recommended-gpu.yaml"] if device.startswith("cuda") else [])
    cmd = [sys.executable, "-m", "helpers", "run", *params,
           "-p", f"data_dir={data}/patient", "-p", f"data_dir_n={data}/neg", "-p", f"data_dir_base={data}/runs",
           "-p", f"device={device}", "-p", "test_frac=0.2", "-p", "group_by=slide", "-p", "which=s_b",
           "-p", "wrong_from=out_of_fold", "-p", f"folds={args.folds}",
           *(arg for kv in args.param for arg in ("-p", kv)), "--strategies", args.strategy, "--jobs", "1"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def bundle_metrics(path: Path) -> dict:
    if not path.is_file():
        return {}
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("metrics.json"))


def step_rows(data: Path, n: int, strategy: str) -> list[dict]:
    """Per step: wall seconds and peak host memory (the runner's record), images per second, and
    for a training step its fit's training images per second and peak GPU memory."""
    state = json.loads((data / "runs" / "reports" / "runner_state.json").read_text())
    rows = []
    for notebook in STEPS:
        name = f"{notebook}_{strategy}" if notebook in ("04_differentiator", "05_relabel_and_classify") else notebook
        record = state.get(name, {})
        seconds = record.get("seconds")
        row = {"step": name, "seconds": seconds, "images_per_second": round(n / seconds) if seconds else None,
               "peak_host_mb": record.get("peak_host_mb")}
        if notebook in TRAINED:
            run = TRAINED[notebook] or strategy
            bundle = data / "runs" / run / ("model_perf.zip" if TRAINED[notebook] else "model_perf_cl.zip")
            metrics = bundle_metrics(bundle)
            row.update({"train_images_per_second": metrics.get("train_images_per_second"),
                        "peak_gpu_mb": metrics.get("peak_gpu_memory_mb"), "device": metrics.get("device")})
        rows.append(row)
    return rows


def print_rows(result: dict) -> None:
    print(f"\nN = {result['n']:,} on {result['device']}: steps {result['steps_seconds']:.0f} s "
          f"(data written in {result['data']['seconds']:.0f} s, peak {result['data']['peak_host_mb']:.0f} MB)")
    print(f"{'step':<34} {'seconds':>8} {'images/s':>10} {'train img/s':>12} {'host MB':>8} {'GPU MB':>8}")
    for r in result["steps"]:
        def cell(key: str, width: int) -> str:
            value = r.get(key)
            return f"{value:>{width},.0f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"
        print(f"{r['step']:<34} {cell('seconds', 8)} {cell('images_per_second', 10)} "
              f"{cell('train_images_per_second', 12)} {cell('peak_host_mb', 8)} {cell('peak_gpu_mb', 8)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, required=True, help="crops in all (e.g. 100000, 300000, 1000000)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale_bench"))
    parser.add_argument("--strategy", default="s_fix", help="the fixing strategy run after 03")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="more parameters for the runner (e.g. epochs=2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale.jsonl")
    parser.add_argument("--force", action="store_true", help="measure again even if --out has this setting")
    args = parser.parse_args()
    device = resolved_device(args.device)
    key = {"n": args.n, "device": device, "strategy": args.strategy, "folds": args.folds, "params": args.param}
    for result in read_lines(args.out):
        if {k: result.get(k) for k in key} == key and not args.force:
            print_rows(result)
            return 0
    data = args.work / f"n{args.n}"
    written = make_data(data, args.n)
    seconds = run_pipeline(data, args, device)
    steps = step_rows(data, args.n, args.strategy)
    result = {**key, "pipeline_seconds": round(seconds, 1),  # this call's; less than the steps' sum when resumed
              "steps_seconds": round(sum(r["seconds"] or 0 for r in steps), 1), "data": written, "steps": steps,
              "measured": time.strftime("%Y-%m-%d %H:%M")}
    print_rows(result)
    append_line(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
