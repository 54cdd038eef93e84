"""What out-of-fold predictions cost next to the final fit, with folds trained one after another or
in parallel processes.

    .venv/bin/python benchmarks/oof_cost.py [--data data/demo/patient] [--folds 5] [--jobs 1,2] [--epochs 8]

Trains SB (resnet18 width 16, batch 128) on the demo's certain images once, then the folds once per
`--jobs` value; prints one JSON line per setting. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers.core.labels import DEFAULT_ANN_DICT, LabelScheme  # noqa: E402
from helpers.curation.out_of_fold import FoldSettings, out_of_fold_probabilities  # noqa: E402
from helpers.data.layout import Layout  # noqa: E402
from helpers.data.sets import open_image_set  # noqa: E402
from helpers.model.training import fit  # noqa: E402
from helpers.run.parameters import train_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/demo/patient")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    scheme = LabelScheme.from_dict(DEFAULT_ANN_DICT)
    layout = Layout.from_params(args.data, args.data, args.data, scheme)
    image_set = open_image_set(layout.certain, scheme)
    cfg = train_config(arch="resnet18", width=16, epochs=args.epochs, batch_size=128, progress=False)

    start = time.perf_counter()
    fit(image_set, scheme, cfg)
    final = time.perf_counter() - start
    print(json.dumps({"what": "final fit", "images": len(image_set), "epochs": args.epochs, "seconds": round(final, 1)}),
          flush=True)
    for jobs in (int(j) for j in args.jobs.split(",")):
        oof = out_of_fold_probabilities(image_set, scheme, cfg, FoldSettings(args.folds, jobs))
        print(json.dumps({"what": "out-of-fold", "folds": args.folds, "fold_jobs": jobs, "seconds": round(oof.seconds, 1),
                          "cost_vs_final_fit": round(oof.seconds / final, 2)}), flush=True)


if __name__ == "__main__":
    main()
