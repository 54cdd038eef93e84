"""Training and prediction throughput of a recipe on the device it runs on (a GPU where there is one).

    .venv/bin/python benchmarks/device_speed.py [--n 200000] [--params parameters/recommended-gpu.yaml]
        [--epochs 2] [--batch-sizes 512,1024] [--device auto] [--work /tmp/device_speed]
        [--out benchmarks/results/device_speed.jsonl]

N demo crops (generated once, combined and split as 01 and 02 do); SB's certain rows train with the
recipe for --epochs epochs (images/s of the fastest epoch after the first, which pays for start-up
and compilation), then every crop is predicted with the recipe's test-time views (images/s after a
warm-up batch). Peak GPU memory of each. One JSON line per batch size.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _measure import append_line  # noqa: E402

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.data.combine_split import combine, split_by_class  # noqa: E402
from helpers.data.demo import DemoSpec, make_demo  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import open_image_set  # noqa: E402
from helpers.model.batches import release_device_images  # noqa: E402
from helpers.model.inference import predict_probabilities  # noqa: E402
from helpers.model.training import fit  # noqa: E402
from helpers.run.parameters import train_config, training_rows  # noqa: E402

SCHEME = LabelScheme.from_dict(DEFAULT_ANN_DICT)


def certain_set(folder: Path, n: int):
    """SB's set (the certain crops) of N demo crops, written once."""
    layout = Layout.from_params(str(folder / "patient"), str(folder / "neg"), str(folder / "runs"), SCHEME)
    if not layout.certain.ann.is_file():
        n_patient = round(n * 2 / 3)
        make_demo(folder, DemoSpec(n_patient=n_patient, n_neg=n - n_patient))
        combine(layout.default_sources, layout.combined, SCHEME, test_frac=0.2, seed=0)
        split_by_class(layout.combined, SCHEME)
    return open_image_set(layout.certain, SCHEME)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gpu_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def measure(image_set, recipe: dict, batch_size: int, epochs: int, device: str) -> dict:
    cfg = train_config(**{**recipe, "batch_size": batch_size, "epochs": epochs, "device": device}, progress=False)
    dev = cfg.torch_device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result = fit(image_set, SCHEME, cfg)
    per_epoch = (result.history["images"] / result.history["seconds"]).tolist()
    train_peak = peak_gpu_mb(dev)
    images = cfg.device_images(image_set.images)
    predict_probabilities(result.model, images, dev, cfg.eval_batch_size, rows=np.arange(1024), amp=cfg.amp)
    synchronize(dev)
    start = time.perf_counter()
    predict_probabilities(result.model, images, dev, cfg.eval_batch_size, amp=cfg.amp)
    synchronize(dev)
    seconds = time.perf_counter() - start
    release_device_images()
    return {"rows": len(image_set), "device": str(dev), "batch_size": batch_size, "lr": cfg.lr, "amp": cfg.amp,
            "images_on_device": cfg.images_on_device, "compile": cfg.compile, "epochs": epochs,
            "train_images_per_second": round(max(per_epoch[1:] or per_epoch)),
            "train_images_per_second_by_epoch": [round(v) for v in per_epoch],
            "predict_views": 8 if cfg.tta else 1, "predict_images_per_second": round(len(image_set) / seconds),
            "peak_gpu_mb_train": train_peak, "peak_gpu_mb": peak_gpu_mb(dev),
            "measured": time.strftime("%Y-%m-%d %H:%M")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--params", default="parameters/recommended-gpu.yaml")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", default="", help="comma-separated (default: the recipe's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("/tmp/device_speed"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/device_speed.jsonl")
    args = parser.parse_args()
    recipe = training_rows(ROOT / args.params)
    image_set = certain_set(args.work / f"n{args.n}", args.n)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b] or [recipe.get("batch_size", 64)]
    for batch_size in sizes:
        row = {"crops": args.n, "params": args.params, **measure(image_set, recipe, batch_size, args.epochs, args.device)}
        print(json.dumps(row), flush=True)
        append_line(args.out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
