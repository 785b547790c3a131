"""The ``rif`` command."""

import argparse
import math
import sys


def _positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rif", description="Exact leave-k-out data attribution for GLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="IF, RIF, Newton step and retraining on the breast-cancer data")
    demo.add_argument("--seed", type=int, default=0, help="train/test split and random sets (default 0)")
    demo.add_argument("--C", type=_positive_float, default=1.0,
                      help="inverse L2 strength of LogisticRegression, a finite number > 0 (default 1)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import print_demo, run_demo

        print_demo(run_demo(seed=args.seed, C=args.C))
    return 0


if __name__ == "__main__":
    sys.exit(main())
