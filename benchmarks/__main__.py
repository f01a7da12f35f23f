"""Command line: ``python -m benchmarks NAME [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import BENCHMARKS


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the toolkit against its anchors in one process.",
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0])
        _common(p, json_help="write the JSON result to PATH")
        module.add_arguments(p)
    p = sub.add_parser("all", help="run every benchmark, one after another")
    _common(p, json_help="write one NAME.json per benchmark into the directory PATH")
    return parser


def _common(p, json_help):
    p.add_argument("--quick", action="store_true", help="fewer repeats and cases (about 3 minutes each)")
    p.add_argument("--json", metavar="PATH", default=None, help=json_help)


def _run_one(name, args, json_path):
    module = importlib.import_module(BENCHMARKS[name])
    module.main(args, json_path=json_path)


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.name != "all":
        _run_one(args.name, args, args.json)
        return 0
    failed = []
    for name, module_name in BENCHMARKS.items():
        # Each benchmark gets its own defaults for the options only it has.
        sub = argparse.ArgumentParser()
        _common(sub, json_help="")
        importlib.import_module(module_name).add_arguments(sub)
        sub_args = sub.parse_args(["--quick"] if args.quick else [])
        json_path = None if args.json is None else f"{args.json}/{name}.json"
        try:
            _run_one(name, sub_args, json_path)
        except Exception:  # keep going: one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
        print()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
