"""Combine + split of N crops (4x31x31 uint8) in two sources: time and peak anonymous memory.

    python benchmarks/combine_split_memory.py N [--naive] [--dir DIR]

Prints one JSON line. Run the streaming and the --naive version as separate processes so each
peak is its own. `copy_seconds` is a plain sequential copy of the same number of bytes the
pipeline writes (sources -> combined, combined -> class sets), the reference for speed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _measure import PeakAnonSampler, timed  # noqa: E402

from helpers.core.atomic import OutputSet  # noqa: E402
from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.data.combine_split import combine, split_by_class  # noqa: E402
from helpers.data.sets import Pair  # noqa: E402

SHAPE = (4, 31, 31)


def make_source(pair: Pair, n: int, seed: int, labels: list[float]) -> None:
    """Random crops written in chunks (never the whole array in memory)."""
    rng = np.random.default_rng(seed)
    step = 50_000
    with OutputSet() as out:
        writer = out.npy(pair.images, (n, *SHAPE), np.uint8)
        for start in range(0, n, step):
            writer.append(rng.integers(0, 256, (min(step, n - start), *SHAPE), dtype=np.uint8))
        out.csv(pd.DataFrame({"annotation": rng.choice(labels, n)}).rename_axis("index"), pair.ann)


def naive(sources: list[Pair], folder: Path, scheme: LabelScheme) -> None:
    """What the pipeline would do without streaming: load everything, concatenate, index."""
    images = np.concatenate([np.load(p.images) for p in sources])
    ann = pd.concat([pd.read_csv(p.ann) for p in sources], ignore_index=True)
    np.save(folder / "combined_images.npy", images)
    ann.to_csv(folder / "combined_ann.csv")
    rounded = np.rint(ann["annotation"]).astype(int)
    for name, value in scheme.ann_dict.items():
        if value >= 0:
            np.save(folder / f"combined_images_{name}.npy", images[rounded == value])
            ann[rounded == value].to_csv(folder / f"combined_ann_{name}.csv")
    certain = np.isin(rounded, [0, 1])
    np.save(folder / "combined_images_parasite_and_non-parasite.npy", images[certain])
    ann[certain].to_csv(folder / "combined_ann_parasite_and_non-parasite.csv")


def plain_copy(sources: list[Pair], combined: Path, certain_bytes: int, folder: Path) -> None:
    """Sequentially copy as many bytes as combine + split write."""
    for i, p in enumerate(sources):
        shutil.copyfile(p.images, folder / f"copy_source_{i}.npy")
    shutil.copyfile(combined, folder / "copy_classes.npy")
    with open(combined, "rb") as src, open(folder / "copy_certain.npy", "wb") as dst:
        remaining = certain_bytes
        while remaining > 0:
            block = src.read(min(64 * 2**20, remaining))
            dst.write(block)
            remaining -= len(block)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("--naive", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    scheme = LabelScheme.from_dict(DEFAULT_ANN_DICT)
    folder = Path(tempfile.mkdtemp(prefix="combine_bench_", dir=args.dir))
    try:
        n_patient = args.n * 2 // 3
        sources = [Pair(folder / "patient_combined_images.npy", folder / "patient_combined_ann.csv"),
                   Pair(folder / "neg_combined_images.npy", folder / "neg_combined_ann.csv")]
        make_source(sources[0], n_patient, 1, [0.0, 1.0, 2.0])
        make_source(sources[1], args.n - n_patient, 2, [0.0])
        result: dict = {"n": args.n, "method": "naive" if args.naive else "streaming"}
        combined = Pair(folder / "combined_images.npy", folder / "combined_ann.csv")
        with PeakAnonSampler() as sampler:
            if args.naive:
                with timed(result, "total_seconds"):
                    naive(sources, folder, scheme)
            else:
                with timed(result, "combine_seconds"):
                    combine(sources, combined, scheme, test_frac=0.2, seed=0)
                with timed(result, "split_seconds"):
                    split_by_class(combined, scheme)
                result["total_seconds"] = round(result["combine_seconds"] + result["split_seconds"], 3)
        result["peak_rss_anon_mb"] = round(sampler.peak / 2**20, 1)
        certain = folder / "combined_images_parasite_and_non-parasite.npy"
        with timed(result, "copy_seconds"):
            plain_copy(sources, folder / "combined_images.npy", certain.stat().st_size, folder)
        result["ratio_to_copy"] = round(result["total_seconds"] / result["copy_seconds"], 2)
        result["bytes_written_gb"] = round(sum(p.stat().st_size for p in folder.glob("copy_*")) / 1e9, 2)
        print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
