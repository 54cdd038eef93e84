"""Command line: `python -m helpers demo OUT_DIR`, `python -m helpers run PARAMS.yaml` and
`python -m helpers parameters [--check]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import InputError, ParameterError
from ..curation.strategies import STRATEGIES
from ..data.demo import EVAL_DIR, EVAL_TRUTH, NOISE_KINDS, DemoSpec, make_demo, make_eval_set
from ..data.digits import DigitsSpec, make_digits
from .generated import sync_generated
from .lock import RunLocked
from .parameter_files import load_parameters
from .reports import comparison_text, summary_table
from .runner import run_pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write synthetic demo data with hidden truth")
    demo.add_argument("out_dir", type=Path, help="folder to write patient/, neg/ and truth.csv into")
    demo.add_argument("--dataset", choices=DATASETS, default="cells",
                      help="cells: generated blood-cell crops (default); digits: scikit-learn's 1,797 real handwritten "
                           "digits, odd = parasite, each turned and mirrored at random (the size options and "
                           "--eval-size do not apply)")
    demo.add_argument("--n-patient", type=int, default=DemoSpec.n_patient,
                      help=f"crops of the annotated (patient) source, parasites, non-parasites and unsures "
                           f"(default {DemoSpec.n_patient})")
    demo.add_argument("--n-neg", type=int, default=DemoSpec.n_neg,
                      help=f"crops of the negative-control source, all non-parasite (default {DemoSpec.n_neg})")
    demo.add_argument("--channels", type=int, default=DemoSpec.channels,
                      help=f"channels per crop: fluorescence ones, then a DPC-like one (default {DemoSpec.channels})")
    demo.add_argument("--size", type=int, default=DemoSpec.size,
                      help=f"crop height and width in pixels (default {DemoSpec.size})")
    demo.add_argument("--seed", type=int, default=DemoSpec.seed,
                      help="random seed of the images, slides, labels and flips: same seed, same files (default 0)")
    demo.add_argument("--flip-frac", type=float, default=DemoSpec.flip_frac,
                      help=f"share of the certain labels flipped (default {DemoSpec.flip_frac})")
    demo.add_argument("--noise", choices=NOISE_KINDS, default=DemoSpec.noise,
                      help="uniform: any certain label flipped at random; systematic: faint parasites and bright "
                           "distractors mislabelled, more often the harder they are")
    demo.add_argument("--eval-size", type=int, default=0, metavar="N",
                      help="also write eval/: N more crops from the same generator (new slides) with their true "
                           "class, which the pipeline never reads; benchmarks score every run on them (default 0: none)")
    demo.add_argument("--if-missing", action="store_true",
                      help="do nothing when the demo data (and, with --eval-size, eval/) already exists")

    run = sub.add_parser("run", help="run the pipeline's notebooks as a DAG from parameters YAML file(s)")
    run.add_argument("params", type=Path, nargs="+", help="YAML files, later ones override earlier ones")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter (value read as YAML); repeatable")
    run.add_argument("--strategies", default=None, help="comma-separated strategies to run, or all (default: the parameters' `strategies`)")
    run.add_argument("--jobs", type=int, default=2, help="steps run at once on this machine (default 2)")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on this Dask scheduler")
    run.add_argument("--force", action="store_true", help="rerun every step, even unchanged ones")

    params = sub.add_parser("parameters", help="rewrite the notebooks' parameters cells, parameters/default.yaml "
                                               "and docs/parameters.md's table from the parameter table")
    params.add_argument("--check", action="store_true", help="only list the files that differ; exit 1 if any")

    args = parser.parse_args(argv)
    return {"demo": _demo, "run": _run, "parameters": _parameters}[args.command](args)


def _parameters(args: argparse.Namespace) -> int:
    try:
        drifted = sync_generated(write=not args.check)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in drifted:
        print(f"{'differs from the parameter table' if args.check else 'rewritten'}: {path}")
    return 1 if args.check and drifted else 0


DATASETS = ("cells", "digits")


def _demo(args: argparse.Namespace) -> int:
    try:
        spec = _demo_spec(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.if_missing and (args.out_dir / "truth.csv").exists():
        print(f"demo data already in {args.out_dir}")
    else:
        paths = make_digits(args.out_dir, spec) if args.dataset == "digits" else make_demo(args.out_dir, spec)
        print(f"demo data written: data_dir={paths['data_dir']} data_dir_n={paths['data_dir_n']} truth={paths['truth']}")
    eval_dir = args.out_dir / EVAL_DIR
    if args.eval_size and not (args.if_missing and (eval_dir / EVAL_TRUTH).exists()):
        make_eval_set(eval_dir, spec, args.eval_size)
        print(f"evaluation set written: {eval_dir} ({args.eval_size} crops)")
    return 0


def _demo_spec(args: argparse.Namespace) -> DemoSpec | DigitsSpec:
    """The generator's spec from the options; a ValueError names the bad one."""
    if args.dataset == "digits":
        if args.eval_size:
            raise ValueError("--eval-size: the digits have no more images to evaluate on (all 1,797 are used)")
        return DigitsSpec(seed=args.seed, flip_frac=args.flip_frac, noise=args.noise)
    for name in ("n_patient", "n_neg", "channels", "size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.eval_size and args.eval_size < 2:
        raise ValueError("--eval-size must be 0 (none) or at least 2")
    return DemoSpec(n_patient=args.n_patient, n_neg=args.n_neg, channels=args.channels, size=args.size,
                    seed=args.seed, flip_frac=args.flip_frac, noise=args.noise)


def _run(args: argparse.Namespace) -> int:
    def progress(result, done: int, total: int) -> None:
        extra = result.headline or result.error
        print(f"[{done}/{total}] {result.step}: {result.status} ({result.seconds:.1f}s){'  ' + extra if extra else ''}",
              flush=True)

    strategies = None
    if args.strategies == "all":
        strategies = list(STRATEGIES)
    elif args.strategies is not None:
        strategies = [s for s in args.strategies.split(",") if s]
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        results, plan = run_pipeline(load_parameters(args.params, args.parameter), strategies, jobs=args.jobs,
                            force=args.force, scheduler=args.scheduler, on_result=progress)
    except (ParameterError, InputError, RunLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(summary_table(results))
    table = comparison_text(plan.metrics_dir)
    if table and any(r.step == "06_compare" and r.succeeded for r in results):
        print(f"\n{table}")
    print(f"\nreports: {plan.reports_dir / 'index.html'}")
    return 0 if all(r.succeeded for r in results) else 1
