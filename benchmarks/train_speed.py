"""Training and inference throughput: the origin's training loop (reference) against helpers.model.training.

    python benchmarks/train_speed.py [--width 64] [--n-train 3072] [--n-infer 8192] [--batch-sizes 32,256]

Same data (demo crops 4x31x31 uint8), same ResNet-18, same optimiser and loss, one run, one
machine. Each part runs in its own process so its peak RssAnon is its own. Prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import PeakAnonSampler  # noqa: E402


def make_data(folder: Path, n: int) -> tuple[Path, Path]:
    from helpers.data.demo import DemoSpec, render

    rng = np.random.default_rng(0)
    truth = rng.random(n) < 0.3
    images, _ = render(rng, truth, DemoSpec())
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", truth.astype(np.int64))
    return folder / "images.npy", folder / "labels.npy"


def reference_train(images_path: Path, labels_path: Path, width: int, n: int, batch_size: int) -> dict:
    """The origin's loop: all images / 255 into one float tensor, TensorDataset, DataLoader with 4 workers."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from helpers.model.networks import ModelSpec, build_model

    torch.manual_seed(0)
    images = np.load(images_path)[:n]
    labels = np.load(labels_path)[:n]
    with PeakAnonSampler() as mem:
        x = torch.tensor(images / 255.0, dtype=torch.float32)
        loader = DataLoader(TensorDataset(x, torch.tensor(labels)), batch_size=batch_size, shuffle=True, num_workers=4)
        model = build_model(ModelSpec("resnet18", 4, ["non-parasite", "parasite"], [0, 1], width=width))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        criterion = torch.nn.CrossEntropyLoss()
        model.train()
        start = time.perf_counter()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
    return {"images_per_second": n / seconds, "seconds": seconds, "peak_rss_anon_mb": mem.peak / 2**20}


def ours_train(images_path: Path, labels_path: Path, width: int, n: int, batch_size: int) -> dict:
    import torch

    from helpers.model.networks import ModelSpec, build_model
    from helpers.model.training import make_criterion, train_one_epoch
    from helpers.run.parameters import train_config

    torch.manual_seed(0)
    images = np.load(images_path, mmap_mode="r")
    targets = np.load(labels_path)
    rows = np.arange(n)
    cfg = train_config(width=width, batch_size=batch_size, epochs=1, progress=False)
    with PeakAnonSampler() as mem:
        model = build_model(ModelSpec("resnet18", 4, ["non-parasite", "parasite"], [0, 1], width=width))
        model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        result = train_one_epoch(model, images, rows, targets, optimizer, make_criterion(cfg, targets, 2),
                                 cfg=cfg, epoch=0)
    return {"images_per_second": n / result["seconds"], "seconds": result["seconds"], "peak_rss_anon_mb": mem.peak / 2**20}


def reference_infer(images_path: Path, width: int, n: int) -> dict:
    """The origin's inference: the float tensor of all images, batches of 2048, no inference_mode."""
    import torch

    from helpers.model.networks import ModelSpec, build_model

    model = build_model(ModelSpec("resnet18", 4, ["non-parasite", "parasite"], [0, 1], width=width)).eval()
    images = np.load(images_path)[:n]
    with PeakAnonSampler() as mem:
        start = time.perf_counter()
        x = torch.tensor(images / 255.0, dtype=torch.float32)
        outputs = [torch.softmax(model(x[s:s + 2048]), 1).detach().numpy() for s in range(0, n, 2048)]
        seconds = time.perf_counter() - start
    assert sum(len(o) for o in outputs) == n
    return {"images_per_second": n / seconds, "seconds": seconds, "peak_rss_anon_mb": mem.peak / 2**20}


def ours_infer(images_path: Path, width: int, n: int, args_infer_batch: int = 512) -> dict:
    from helpers.model.inference import predict_probabilities
    from helpers.model.networks import ModelSpec, build_model

    model = build_model(ModelSpec("resnet18", 4, ["non-parasite", "parasite"], [0, 1], width=width)).eval()
    images = np.load(images_path, mmap_mode="r")[:n]
    with PeakAnonSampler() as mem:
        start = time.perf_counter()
        probs = predict_probabilities(model, images, "cpu", batch_size=args_infer_batch)
        seconds = time.perf_counter() - start
    assert len(probs) == n
    return {"images_per_second": n / seconds, "seconds": seconds, "peak_rss_anon_mb": mem.peak / 2**20}


def run_part(part: str, args: argparse.Namespace, folder: Path, batch_size: int = 32) -> dict:
    """Run one part in a fresh process and return its JSON result."""
    cmd = [sys.executable, __file__, "--part", part, "--folder", str(folder), "--width", str(args.width),
           "--n-train", str(args.n_train), "--n-infer", str(args.n_infer), "--batch-sizes", str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=3072)
    parser.add_argument("--n-infer", type=int, default=8192)
    parser.add_argument("--batch-sizes", default="32", help="our training batch sizes to measure, comma-separated")
    parser.add_argument("--part", default="", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part:  # child process: one measurement
        images, labels = args.folder / "images.npy", args.folder / "labels.npy"
        bs = int(args.batch_sizes)
        result = {"reference_train": lambda: reference_train(images, labels, args.width, args.n_train, 32),
                  "ours_train": lambda: ours_train(images, labels, args.width, args.n_train, bs),
                  "reference_infer": lambda: reference_infer(images, args.width, args.n_infer),
                  "ours_infer": lambda: ours_infer(images, args.width, args.n_infer)}[args.part]()
        print(json.dumps({k: round(v, 2) for k, v in result.items()}))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder, max(args.n_train, args.n_infer))
        common = {"width": args.width, "arch": "resnet18"}
        ref = run_part("reference_train", args, folder)
        print(json.dumps({**common, "what": "train", "loop": "reference", "batch_size": 32, "n": args.n_train, **ref}), flush=True)
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            ours = run_part("ours_train", args, folder, bs)
            print(json.dumps({**common, "what": "train", "loop": "ours", "batch_size": bs, "n": args.n_train, **ours,
                              "ratio_to_reference": round(ours["images_per_second"] / ref["images_per_second"], 2)}), flush=True)
        ref = run_part("reference_infer", args, folder)
        print(json.dumps({**common, "what": "inference", "loop": "reference", "batch_size": 2048, "n": args.n_infer, **ref}), flush=True)
        ours = run_part("ours_infer", args, folder)
        print(json.dumps({**common, "what": "inference", "loop": "ours", "batch_size": 512, "n": args.n_infer, **ours,
                          "ratio_to_reference": round(ours["images_per_second"] / ref["images_per_second"], 2),
                          "memory_ratio": round(ours["peak_rss_anon_mb"] / ref["peak_rss_anon_mb"], 3)}), flush=True)


if __name__ == "__main__":
    main()
