"""Every GPU figure of the scale issue in one command, each against its target.

    .venv/bin/python benchmarks/gpu_check.py [--work /tmp/gpu_check] [--skip scale,demo,...]
    (a dry run of the script on the CPU: --device cpu --speed-n 3000 --scale-n 3000 --seeds 0 --skip demo)

1. `train`, `predict`: benchmarks/device_speed.py on 200,000 crops with parameters/recommended-gpu.yaml
   (batch 512, and 1024 and 2048 beside it): training images/s (target 250,000) and prediction with the
   8 test-time views (target 300,000).
2. `accuracy`: benchmarks/recipe.py, SB on the demo (3 seeds) with recommended-gpu.yaml on the GPU,
   against recommended.yaml on the CPU (benchmarks/results/recipe_gpu.jsonl, measured on 2 cores):
   mean test accuracy against the truth within 0.3 points.
3. `scale`: benchmarks/scale.py --n 1000000 on the GPU: all steps under 600 s.
4. `demo`: the demo DAG (parameters/demo.yaml + recommended-gpu.yaml, --jobs 4, every step run):
   under 90 s.
Writes one JSON line to --out (benchmarks/results/gpu_check.jsonl) and prints the table.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _measure import append_line, read_lines

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def speed(work: Path, args: argparse.Namespace) -> dict:
    out = work / "device_speed.jsonl"
    run([PY, "benchmarks/device_speed.py", "--n", str(args.speed_n), "--batch-sizes", "512,1024,2048",
         "--device", args.device, "--work", str(work), "--out", str(out)])
    rows = read_lines(out)
    best = max(rows, key=lambda r: r["train_images_per_second"])
    return {"train": best["train_images_per_second"], "train_batch_size": best["batch_size"],
            "predict": max(r["predict_images_per_second"] for r in rows), "rows": rows}


def mean_accuracy(path: Path, recipe: str) -> tuple[float, int]:
    rows = read_lines(path)
    values = [r["accuracy"] for r in rows if r["recipe"] == recipe and r["labels"] == "noisy"]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def accuracy(work: Path, args: argparse.Namespace) -> dict:
    out = work / "recipe_cuda.jsonl"
    run([PY, "benchmarks/recipe.py", "--seeds", args.seeds, "--labels", "noisy", "--no-target",
         "--recipes", "recommended-gpu.yaml", "--work", str(work / "recipe"), "--out", str(out)])
    gpu, n_gpu = mean_accuracy(out, "recommended-gpu.yaml")
    cpu, n_cpu = mean_accuracy(RESULTS / "recipe_gpu.jsonl", "recommended.yaml")
    return {"gpu_recipe_on_gpu": gpu, "cpu_recipe_on_cpu": cpu, "seeds": [n_gpu, n_cpu], "points": 100 * (gpu - cpu)}


def scale(work: Path, args: argparse.Namespace) -> dict:
    out = work / "scale.jsonl"
    run([PY, "benchmarks/scale.py", "--n", str(args.scale_n), "--device", args.device, "--work", str(work / "scale"),
         "--out", str(out), "--force"])
    return read_lines(out)[-1]


def demo(work: Path, args: argparse.Namespace) -> dict:
    data = work / "demo"
    run([PY, "-m", "helpers", "demo", str(data), "--if-missing"])
    seconds = run([PY, "-m", "helpers", "run", "parameters/demo.yaml", "parameters/recommended-gpu.yaml",
                   "-p", f"data_dir={data}/patient", "-p", f"data_dir_n={data}/neg", "-p", f"data_dir_base={data}/runs",
                   "-p", f"truth_path={data}/truth.csv", "-p", f"overrides_path={data}/overrides.csv",
                   "-p", f"verified_path={data}/verified.csv", "-p", f"device={args.device}", "--jobs", "4", "--force"])
    return {"seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"))
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: speed,accuracy,scale,demo")
    parser.add_argument("--device", default="cuda", help="cuda (the check); cpu only to try the script out")
    parser.add_argument("--speed-n", type=int, default=200_000)
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(",")) - {""}
    parts = {"speed": speed, "accuracy": accuracy, "scale": scale, "demo": demo}
    found = {name: part(args.work, args) for name, part in parts.items() if name not in skip}
    checks = []
    if "speed" in found:
        checks += [("training images/s, 200k crops", found["speed"]["train"], ">=", 250_000),
                   ("prediction images/s, 8 views", found["speed"]["predict"], ">=", 300_000)]
    if "accuracy" in found:
        checks.append(("|GPU recipe - CPU recipe| accuracy, points", abs(found["accuracy"]["points"]), "<=", 0.3))
    if "scale" in found:
        checks.append(("1M-crop scale run, s", found["scale"]["steps_seconds"], "<=", 600))
    if "demo" in found:
        checks.append(("demo DAG, s", found["demo"]["seconds"], "<=", 90))
    for name, value, op, target in checks:
        met = value >= target if op == ">=" else value <= target
        print(f"{name:<45} {value:>12,.2f}  target {op} {target:<10,} {'met' if met else 'NOT met'}")
    append_line(args.out, {"measured": time.strftime("%Y-%m-%d %H:%M"), **found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
