"""The ``rif`` command: argument parsing and printing only (the work is in rif._demo and rif._report)."""

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


def _parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="rif", description="Exact leave-k-out data attribution for GLMs.")
    parser.add_argument("--version", action="version", version=f"rif {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="IF, RIF, Newton step and retraining on the breast-cancer data")
    demo.add_argument("--seed", type=int, default=0, help="train/test split and random sets (default 0)")
    demo.add_argument("--C", type=_positive_float, default=1.0,
                      help="inverse L2 strength of LogisticRegression, a finite number > 0 (default 1)")
    audit = sub.add_parser(
        "audit", help="which rows flip each coefficient's sign or significance; suspicious labels",
        description="Fit a GLM to a CSV and report, for each coefficient, the fewest rows (or groups) "
                    "whose removal flips its sign or its significance (found by greedy search with exact "
                    "refits, every set verified by refit), the most suspicious labels and the most "
                    "influential rows.")
    audit.add_argument("data", help="CSV file with a header row")
    audit.add_argument("--target", required=True, help="the response column")
    audit.add_argument("--model", default="logistic", help="logistic, linear or poisson (default logistic)")
    audit.add_argument("--features", nargs="+", metavar="COLUMN",
                       help="feature columns (default: all but the target and groups)")
    audit.add_argument("--categorical", nargs="+", default=[], metavar="COLUMN",
                       help="columns to one-hot encode (first level dropped)")
    audit.add_argument("--groups", metavar="COLUMN", help="remove whole groups (clusters) instead of rows")
    audit.add_argument("--coef", metavar="NAME", help="audit only this coefficient")
    audit.add_argument("--penalty", type=float, default=0.0,
                       help="L2 strength lambda of sum(loss) + lambda/2 ||beta||^2 (default 0: unpenalised)")
    audit.add_argument("--method", default="greedy", choices=["greedy", "if", "rif"],
                       help="greedy with exact refits (default), or one sort by IF or RIF")
    audit.add_argument("--se", default="model", choices=["model", "hc0"], help="standard error (default model)")
    audit.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    audit.add_argument("--max-fraction", type=float, default=0.1,
                       help="largest fraction of rows (groups) to remove (default 0.1)")
    audit.add_argument("--per-step", type=int, default=None,
                       help="rows (groups) removed per greedy step (default: 1 per 2000 rows, at least 1)")
    audit.add_argument("--top", type=int, default=10, help="rows to list per section (default 10)")
    audit.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' for stdout only)")
    audit.add_argument("--out", metavar="DIR", help="write report.json, influence.csv and influence.png here")
    return parser


def _audit(args, out, err):
    import json

    from ._report import AuditInputError, audit_table, format_report, read_table, report_json, write_outputs

    try:
        frame = read_table(args.data)
        report, _, _ = audit_table(
            frame, args.target, args.model, features=args.features, categorical=args.categorical,
            groups=args.groups, coef=args.coef, penalty=args.penalty, method=args.method, se=args.se,
            alpha=args.alpha, max_fraction=args.max_fraction, per_step=args.per_step, top=args.top)
    except AuditInputError as exc:
        err(f"rif audit: error: {exc}")
        return 2
    except ValueError as exc:      # rif's own checks (e.g. separable data, a singular Hessian)
        err(f"rif audit: error: {str(exc).splitlines()[0]}")
        return 2
    if args.json == "-":
        out(json.dumps(report_json(report), indent=2))
    else:
        for line in format_report(report, frame, show=args.top):
            out(line)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report_json(report), fh, indent=2)
            out(f"\nJSON report: {args.json}")
    if args.out:
        paths = write_outputs(report, args.out)
        out(f"Wrote {paths['json']}, {paths['csv']} and {paths['png']}")
    return 0


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from ._demo import print_demo, run_demo

        print_demo(run_demo(seed=args.seed, C=args.C))
        return 0
    return _audit(args, print, lambda line: print(line, file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
