"""The ``rif`` command."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rif", description="Exact leave-k-out data attribution for GLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="IF, RIF, Newton step and retraining on the breast-cancer data")
    demo.add_argument("--seed", type=int, default=0, help="train/test split and random sets (default 0)")
    demo.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of LogisticRegression")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import print_demo, run_demo

        print_demo(run_demo(seed=args.seed, C=args.C))
    return 0


if __name__ == "__main__":
    sys.exit(main())
