"""Command line: `python -m helpers demo OUT_DIR` and `python -m helpers run PARAMS.yaml`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write synthetic demo data with hidden truth")
    demo.add_argument("out_dir", type=Path)
    demo.add_argument("--n-patient", type=int, default=4000)
    demo.add_argument("--n-neg", type=int, default=2000)
    demo.add_argument("--channels", type=int, default=4)
    demo.add_argument("--size", type=int, default=31)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--if-missing", action="store_true", help="do nothing when the demo data already exists")

    run = sub.add_parser("run", help="run the pipeline's notebooks from a parameters YAML")
    run.add_argument("params", type=Path)
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter (value read as YAML); repeatable")

    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return _run(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoSpec, make_demo

    if args.if_missing and (args.out_dir / "truth.csv").exists():
        print(f"demo data already in {args.out_dir}")
        return 0
    for name in ("n_patient", "n_neg", "channels", "size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    spec = DemoSpec(n_patient=args.n_patient, n_neg=args.n_neg, channels=args.channels, size=args.size, seed=args.seed)
    paths = make_demo(args.out_dir, spec)
    print(f"demo data written: data_dir={paths['data_dir']} data_dir_n={paths['data_dir_n']} truth={paths['truth']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .errors import InputError, ParameterError
    from .runner import load_parameters, run, summary_table

    try:
        results = run(load_parameters(args.params, args.parameter))
    except (ParameterError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(results))
    ok = all(r.status == "ok" for r in results)
    if ok:
        print(f"reports: {results[-1].output.parent}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
